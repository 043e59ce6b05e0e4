"""The job runner the worker calls: inputs by blob id -> the job's engine -> a layer.

Everything it writes to a document goes through the room (durable before visible), and a
job id yields at most one layer. Each job names its engine and model; engines are made on
first use, in the worker's thread (loading a model must not stall the event loop), and kept.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio.to_thread
import numpy as np
from pycrdt import Map

from ...shared import schema
from ...shared.enums import JobKind, JobStatus, LayerSource, LayerState
from ...shared.errors import NotFound
from ..engines import EngineError, FixResult, InpaintParams
from ..engines.registry import EnginePool
from ..jobs.queue import Job
from ..jobs.worker import Work
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from . import events, masks
from .document import approved_chain, job_entry, layer_id_for, pin_links
from .flatten import flatten_layers
from .parent_cache import ParentCache, decode_rgb, encode_png
from .queue_positions import QueuePositions

logger = logging.getLogger(__name__)


class FixJobRunner:
    """Runs edit jobs for the worker (:class:`..jobs.worker.JobRunner`)."""

    def __init__(
        self,
        blobs: BlobStore,
        rooms: RoomManager,
        engines: EnginePool,
        positions: QueuePositions,
        bus: events.EventBus,
    ) -> None:
        self.blobs = blobs
        self.rooms = rooms
        self.engines = engines
        self.positions = positions
        self.bus = bus
        # Decoding a large base image costs more than a small CPU fix: keep a few; and the
        # mask, which the variants of a request share (a full-size PNG: 15 ms at 4096 px).
        self._parents = ParentCache(4)
        self._masks = ParentCache(8)
        self._described: dict[int, dict[str, Any]] = {}
        #: The runners of the other job kinds (upscale, animate): each of this runner's
        #: methods hands their jobs over, so the worker and cancelling need one runner.
        self.kinds: dict[JobKind, Any] = {}

    def _other(self, job: Job) -> Any:
        """The runner of a job of another kind than edit; None for an edit job."""
        if job.kind is JobKind.EDIT:
            return None
        runner = self.kinds.get(job.kind)
        if runner is None:
            raise EngineError(f"this server runs no {job.kind.value} jobs")
        return runner

    def _engine_of(self, job: Job) -> tuple[str, str | None]:
        """(engine, model) the job asked for; jobs from before engines per request ran on
        the server's one engine."""
        name = job.engine or job.payload.get("engine")
        if not name:
            default = self.engines.default
            return default.name, default.describe().get("model")
        return name, job.payload.get("params", {}).get("model")

    async def prepare(self, job: Job) -> Work:
        if (other := self._other(job)) is not None:
            handed: Work = await other.prepare(job)
            return handed
        payload = job.payload
        key = (payload["base"], payload.get("parent"))
        # What is decoded already is taken now (so an eviction cannot lose it) and its
        # files are not read again: a 4096-px base is a 25 MB read.
        cached_parent = self._parents.get(key)
        cached_mask = self._masks.get((payload["mask"], None))
        base: bytes | None = None
        mask_png: bytes | None = None
        patches: list[tuple[bytes, Any]] = []
        try:
            if cached_parent is None:
                base = await self.blobs.get(payload["base"])
            if cached_mask is None:
                mask_png = await self.blobs.get(payload["mask"])
        except NotFound:
            raise EngineError("the job's image or mask is missing from the blob store") from None
        if cached_parent is None:
            room = await self.rooms.acquire(job.session_id)
            layers = approved_chain(room, payload.get("parent"))
            patches = [(await self.blobs.get(lay["patch"]), lay["box"]) for lay in layers]
        params = InpaintParams(**payload["params"])
        name, model = self._engine_of(job)
        pool = self.engines

        def work(progress: Any) -> FixResult:
            from ..engines.compositing import run_fix

            engine = pool.get(name, model)
            parent = cached_parent
            if parent is None:
                assert base is not None
                parent = flatten_layers(decode_rgb(base), patches)
                self._parents.put(key, parent)
            height, width = parent.shape[:2]
            mask = cached_mask  # a mask blob is one size: run_fix checks it against the parent
            if mask is None:
                assert mask_png is not None
                mask = masks.decode_mask_png(mask_png, width, height)
                self._masks.put((payload["mask"], None), mask)
            try:
                result: FixResult = run_fix(parent, mask, engine, params, progress)
            except ValueError as exc:
                raise EngineError(str(exc)) from None
            # The calls' own provenance (a hosted model's version, usage, retries: one per
            # crop), kept per thread by engines that have it: hosted jobs run at once.
            last_calls = getattr(engine, "last_calls", None)
            call = {"calls": last_calls(len(result.crops))} if callable(last_calls) else {}
            return FixResult(
                patch=result.patch,
                box=result.box,
                crops=result.crops,
                details={"engine_info": self._describe(engine), **result.details, **call},
            )

        return work

    def _describe(self, engine: Any) -> dict[str, Any]:
        """An engine's provenance, asked once per engine (describing may query versions)."""
        info = self._described.get(id(engine))
        if info is None:
            info = self._described[id(engine)] = engine.describe()
        return info

    async def started(self, job: Job) -> None:
        if (other := self._other(job)) is not None:
            return await other.started(job)  # type: ignore[no-any-return]

        def write(room: Room) -> None:
            mark_running(job_entry(room, job))

        await self.rooms.server_write(job.session_id, write)
        await self.positions.refresh()

    async def progress(self, job: Job, step: int, total: int, preview: Any) -> None:
        if (other := self._other(job)) is not None:
            return await other.progress(job, step, total, preview)  # type: ignore[no-any-return]
        await write_progress(self.rooms, self.blobs, job, step, total, preview)

    async def result(self, job: Job, output: Any) -> tuple[str, dict[str, Any]]:
        if (other := self._other(job)) is not None:
            done: tuple[str, dict[str, Any]] = await other.result(job, output)
            return done
        assert isinstance(output, FixResult)
        png = await anyio.to_thread.run_sync(encode_png, output.patch)
        patch_id = await self.blobs.put(png)
        payload = job.payload
        layer_id = layer_id_for(job.id)
        details = dict(output.details)
        engine_info = details.pop("engine_info", {})
        layer = {
            schema.Layer.ID: layer_id,
            schema.Layer.PIN_ID: job.pin_id,
            schema.Layer.PATCH: patch_id,
            schema.Layer.BOX: list(output.box),
            schema.Layer.PARENT: payload.get("parent"),
            schema.Layer.FIX: payload.get("fix") or job.id,
            schema.Layer.SOURCE: LayerSource.INPAINT.value,
            schema.Layer.PARAMS: {
                **engine_info,
                **{k: v for k, v in payload["params"].items() if v is not None},
                "engine": engine_info.get("engine") or job.engine,
                "kind": job.kind.value,
                "job": job.id,
                "variant": payload["variant"],
                "variants": payload.get("variants", 1),
                "mask": payload["mask"],
                "crops": [list(c) for c in output.crops],
                **details,
            },
            schema.Layer.AUTHOR: payload["author"],
            schema.Layer.CREATED_AT: time.time(),
            schema.Layer.STATE: LayerState.PENDING.value,
        }
        return layer_id, layer

    async def publish(self, job: Job, layer: dict[str, Any]) -> None:
        if (other := self._other(job)) is not None:
            return await other.publish(job, layer)  # type: ignore[no-any-return]

        def write(room: Room) -> None:
            layer_id = layer[schema.Layer.ID]
            if not any(
                isinstance(existing, Map) and existing.get(schema.Layer.ID) == layer_id
                for existing in room.layers
            ):
                room.layers.append(Map({**layer, schema.Layer.DECISIONS: Map()}))
                pin_links(room, job.pin_id, schema.Pin.LAYERS).append(layer_id)
            entry = job_entry(room, job)
            entry[schema.Job.STATUS] = JobStatus.DONE.value
            entry[schema.Job.LAYER] = layer_id
            entry[schema.Job.FINISHED_AT] = job.finished_at or time.time()
            entry[schema.Job.STEP] = entry.get(schema.Job.TOTAL)

        await self.rooms.server_write(job.session_id, write)
        self.bus.publish(
            events.Event(
                events.LAYER_CREATED,
                job.session_id,
                {
                    "layer": layer[schema.Layer.ID],
                    "pin": job.pin_id,
                    "fix": layer.get(schema.Layer.FIX),
                    "source": "inpaint",
                    "author": layer[schema.Layer.AUTHOR],
                    "job": job.id,
                    "at": layer[schema.Layer.CREATED_AT],
                },
            )
        )
        self.bus.publish(
            events.Event(
                events.JOB_DONE,
                job.session_id,
                {"job": job.id, "pin": job.pin_id, "layer": layer[schema.Layer.ID]},
            )
        )

    async def stopped(self, job: Job) -> None:
        if (other := self._other(job)) is not None:
            return await other.stopped(job)  # type: ignore[no-any-return]

        def write(room: Room) -> None:
            mark_stopped(job_entry(room, job), job)

        await self.rooms.server_write(job.session_id, write)
        await self.positions.refresh()
        kind = {JobStatus.FAILED: events.JOB_FAILED, JobStatus.CANCELLED: events.JOB_CANCELLED}
        if job.status in kind:  # not when a job is requeued
            self.bus.publish(
                events.Event(
                    kind[job.status],
                    job.session_id,
                    {"job": job.id, "pin": job.pin_id, "error": job.error},
                )
            )


def mark_running(entry: Map[Any]) -> None:
    """A job's document entry as its job starts running (any kind)."""
    entry[schema.Job.STATUS] = JobStatus.RUNNING.value
    entry[schema.Job.STARTED_AT] = time.time()
    entry[schema.Job.POSITION] = 0
    entry[schema.Job.STEP] = 0
    entry[schema.Job.ERROR] = None


def mark_stopped(entry: Map[Any], job: Job) -> None:
    """A job's document entry once its job stopped: done, failed, cancelled or requeued."""
    entry[schema.Job.STATUS] = job.status.value
    entry[schema.Job.ERROR] = job.error if job.status is JobStatus.FAILED else None
    entry[schema.Job.FINISHED_AT] = job.finished_at
    if job.status is JobStatus.QUEUED:
        entry[schema.Job.STEP] = 0


async def write_progress(
    rooms: RoomManager, blobs: BlobStore, job: Job, step: int, total: int, preview: Any
) -> None:
    """A running job's step, total and preview (stored as a PNG blob) in its document entry."""
    preview_id = None
    if isinstance(preview, np.ndarray):
        png = await anyio.to_thread.run_sync(encode_png, preview)
        # A preview is superseded within a second; losing it in a power cut is fine.
        preview_id = await blobs.put(png, durable=False)

    def write(room: Room) -> None:
        entry = room.jobs.get(job.id)
        if isinstance(entry, Map) and entry.get(schema.Job.STATUS) == JobStatus.RUNNING.value:
            entry[schema.Job.STEP] = step
            entry[schema.Job.TOTAL] = total
            if preview_id is not None:
                entry[schema.Job.PREVIEW] = preview_id

    await rooms.server_write(job.session_id, write)
