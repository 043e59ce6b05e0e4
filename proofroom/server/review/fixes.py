"""Fix requests: from a pin to queued inpaint jobs, and from a finished job to a layer.

This is the job runner the worker calls; everything it writes to a document goes through
the room (durable before visible), and a job id yields at most one layer.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

import anyio.to_thread
import numpy as np
from PIL import Image
from pycrdt import Array, Map

from ...shared import schema
from ...shared.enums import JobStatus, LayerSource, LayerState, PinStatus
from ...shared.errors import BadRequest, Conflict, NotFound, ProofroomError
from ...shared.permissions import Action
from ..bodies import check_fields
from ..engines import Engine, EngineError, FixResult, InpaintParams
from ..engines.registry import ENGINES
from ..identity import Identity
from ..jobs.queue import Job, JobQueue, NewJob
from ..jobs.worker import Work, Worker
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.records import Records, SessionRecord, audit_statement
from . import events, masks
from .flatten import flatten_layers

logger = logging.getLogger(__name__)

LIMITS = {
    "steps": (1, 150),
    "strength": (0.0, 1.0),
    "guidance": (0.0, 30.0),
    "variants": (1, 8),
    "priority": (-10, 10),
}
MAX_PROMPT_CHARS = 2000
#: What a fix request may hold; anything else is a 400 naming these.
FIELDS = frozenset(
    {*LIMITS, "prompt", "negative_prompt", "seed", "mask", "region", "engine", "model"}
)


def layer_id_for(job_id: str) -> str:
    """The one layer a job can produce."""
    return f"l_{job_id}"


class Fixes:
    """Fix requests, cancellation, and the worker's job runner."""

    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        rooms: RoomManager,
        queue: JobQueue,
        engine: Engine,
        bus: events.EventBus,
    ) -> None:
        self.bus = bus
        self.records = records
        self.blobs = blobs
        self.rooms = rooms
        self.queue = queue
        self.engine = engine
        self.worker: Worker | None = None
        self._engine_info = engine.describe()
        self._positions: dict[str, int] = {}
        # Decoding a large base image costs more than a small classical fix: keep a few.
        self._parents = _ParentCache(4)

    # -- requests -------------------------------------------------------------------------

    async def request(
        self, session_id: str, pin_id: str, body: dict[str, Any], actor: Identity
    ) -> list[Job]:
        """Validate a fix request and queue one job per variant, atomically."""
        actor = actor.require(session_id, Action.EDIT)
        check_fields(body, FIELDS)
        self._check_engine(body)
        session, room, pin = await open_pin(self.records, self.rooms, session_id, pin_id)
        params, variants, priority = self._parse_params(body, pin)
        mask = await self._mask(body, pin, session.width, session.height)
        mask = self._subtract_locks(mask, room)
        if mask.all():
            raise BadRequest("the mask covers the whole image; fix a part of it")
        mask_png = await anyio.to_thread.run_sync(masks.encode_mask_png, mask)
        mask_blob = hashlib.sha256(mask_png).hexdigest()
        parent = _last_approved_layer(room)
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        box = [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
        jobs = [
            NewJob(
                id=f"j_{secrets.token_hex(6)}",
                session_id=session_id,
                pin_id=pin_id,
                priority=priority,
                payload={
                    "params": {**params.to_json(), "seed": (params.seed + i) % 2**32},
                    "variant": i,
                    "variants": variants,
                    "mask": mask_blob,
                    "box": box,
                    "base": session.base_blob,
                    "parent": parent,
                    "author": actor.user_id,
                },
            )
            for i in range(variants)
        ]

        # The mask goes to disk while the jobs are queued durably; then a worker may start
        # at once. Announcing them in the document need not hold it up: whichever of the
        # announcement and the worker's "running" lands first creates the job's entry.
        # The audit row commits with the jobs: both or neither (429 past the session's cap).
        audit = audit_statement(
            session_id,
            actor,
            "fix.request",
            pin_id,
            {"jobs": [j.id for j in jobs], "mask": mask_blob, **params.to_json()},
        )
        _, queued = await asyncio.gather(
            self.blobs.put(mask_png), self.queue.enqueue(jobs, wake=False, also=[audit])
        )
        self.queue.wakeup.set()

        def announce(room: Room) -> None:
            for job in queued:
                _job_entry(room, job)
            _pin_links(room, pin_id, schema.Pin.JOBS).extend([j.id for j in queued])

        await room.server_write(announce)
        for job in queued:
            self.bus.publish(
                events.Event(
                    events.JOB_QUEUED,
                    session_id,
                    {"job": job.id, "pin": pin_id, "by": actor.user_id},
                )
            )
        await self.refresh_positions()
        return queued

    def _check_engine(self, body: dict[str, Any]) -> None:
        """A request may name the engine (and model) this server runs; anything else is a 400.

        Never silently replaced: asking for another engine and getting this one would put
        the wrong provenance on the layer and the wrong result before the approver.
        """
        running = self.engine.name
        engine = body.get("engine")
        if engine is not None:
            if not isinstance(engine, str):
                raise BadRequest(f"engine must be the name of an engine: {running}")
            if engine not in ENGINES:
                shown = engine if len(engine) <= 64 else engine[:64] + "..."
                raise BadRequest(
                    f"unknown engine {shown!r}; available on this server: {running}"
                    f" (engines Proofroom knows: {', '.join(sorted(ENGINES))})"
                )
            if engine != running:
                raise BadRequest(
                    f"the {engine} engine is not available on this server, which runs the"
                    f" {running} engine (one engine per server: start it with --engine {engine}"
                    f"{' --model PATH_OR_ID' if engine == 'diffusion' else ''}); available:"
                    f" {running}"
                )
        model = body.get("model")
        if model is not None:
            loaded = self._engine_info.get("model")
            if not isinstance(model, str):
                raise BadRequest("model must be text: the model this server's engine runs")
            if loaded is None:
                raise BadRequest(f"the {running} engine takes no model; leave model out")
            if model != loaded:
                shown = model if len(model) <= 200 else model[:200] + "..."
                raise BadRequest(
                    f"model {shown!r} is not loaded here: this server's {running} engine runs"
                    f" {loaded} (one model per server: start it with --model)"
                )

    def _parse_params(self, body: dict[str, Any], pin: Map[Any]) -> tuple[InpaintParams, int, int]:
        def number(name: str, default: float, kind: type = float) -> Any:
            value = body.get(name, default)
            if value is None:
                value = default
            lo, hi = LIMITS[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (kind is int and not float(value).is_integer())
                or not lo <= value <= hi
                or (name == "strength" and value == 0)
            ):
                bound = f"more than {lo}" if name == "strength" else f"from {lo}"
                raise BadRequest(f"{name} must be a {kind.__name__} {bound} to {hi}")
            return kind(value)

        prompt = body.get("prompt")
        if prompt is None:
            prompt = draft_prompt(pin)
        negative = "" if body.get("negative_prompt") is None else body["negative_prompt"]
        for name, text in (("prompt", prompt), ("negative_prompt", negative)):
            if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
                raise BadRequest(f"{name} must be text of at most {MAX_PROMPT_CHARS} characters")
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**32)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise BadRequest("seed must be an integer from 0 to 4294967295")
        params = InpaintParams(
            prompt=prompt,
            negative_prompt=negative,
            seed=seed,
            steps=number("steps", 20, int),
            strength=number("strength", 1.0),
            guidance=number("guidance", 7.5),
        )
        return params, number("variants", 1, int), number("priority", 0, int)

    async def _mask(
        self, body: dict[str, Any], pin: Map[Any], width: int, height: int
    ) -> np.ndarray:
        if body.get("mask") is not None and body.get("region") is not None:
            raise BadRequest("give a mask or a region, not both")
        if body.get("mask") is not None:
            mask = await masks.mask_from_request(body["mask"], self.blobs, width, height)
        elif body.get("region") is not None:
            box = masks.parse_box(body["region"], width, height)
            mask = masks.box_mask(box, width, height)
        elif pin.get(schema.Pin.MASK):
            mask = await masks.mask_from_request(pin[schema.Pin.MASK], self.blobs, width, height)
        elif pin.get(schema.Pin.REGION) is not None:
            box = masks.parse_box(list(pin[schema.Pin.REGION]), width, height, "the pin's region")
            mask = masks.box_mask(box, width, height)
        else:
            raise BadRequest("give a mask or a region (the pin has neither)")
        if not mask.any():
            raise BadRequest("the mask is empty")
        return mask

    @staticmethod
    def _subtract_locks(mask: np.ndarray, room: Room) -> np.ndarray:
        locks = room.meta.get(schema.Meta.LOCKS)
        if not locks:
            return mask
        mask = mask.copy()
        for lock in list(locks):
            x, y, w, h = (round(v) for v in lock)
            mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = False
        if not mask.any():
            raise BadRequest("the mask lies entirely inside locked regions")
        return mask

    async def cancel(self, job_id: str, actor: Identity) -> Job:
        """Cancel a queued or running job; Conflict if it already finished."""
        job = await self.queue.get(job_id)
        if job is None:
            raise NotFound("no such job")
        actor.require(job.session_id, Action.EDIT)
        # The audit row commits with the cancellation, and only if it happens.
        audit = audit_statement(job.session_id, actor, "job.cancel", job_id, {})
        cancelled = await self.queue.cancel(job_id, also=[audit])
        if self.worker is not None:
            self.worker.cancel(job_id)
        if job.status is JobStatus.QUEUED:
            await self.stopped(cancelled)
        return cancelled

    async def refresh_positions(self) -> None:
        """Write each queued job's place in the queue into its document (if it changed)."""
        queued = await self.queue.queued()
        positions = {job.id: n for n, job in enumerate(queued, start=1)}
        by_session: dict[str, dict[str, int]] = {}
        for job in queued:
            if self._positions.get(job.id) != positions[job.id]:
                by_session.setdefault(job.session_id, {})[job.id] = positions[job.id]
        self._positions = positions
        for session_id, changed in by_session.items():

            def write(room: Room, changed: dict[str, int] = changed) -> None:
                for job_id, position in changed.items():
                    entry = room.jobs.get(job_id)
                    if isinstance(entry, Map):
                        entry[schema.Job.POSITION] = position

            await self.rooms.server_write(session_id, write)

    # -- the job runner -------------------------------------------------------------------

    async def prepare(self, job: Job) -> Work:
        payload = job.payload
        try:
            base = await self.blobs.get(payload["base"])
            mask_png = await self.blobs.get(payload["mask"])
        except NotFound:
            raise EngineError("the job's image or mask is missing from the blob store") from None
        room = await self.rooms.acquire(job.session_id)
        layers = _approved_chain(room, payload.get("parent"))
        patches = [(await self.blobs.get(lay["patch"]), lay["box"]) for lay in layers]
        params = InpaintParams(**payload["params"])
        engine = self.engine
        key = (payload["base"], payload.get("parent"))

        def work(progress: Any) -> FixResult:
            from ..engines.compositing import run_fix

            parent = self._parents.get(key)
            if parent is None:
                parent = flatten_layers(_decode_rgb(base), patches)
                parent.flags.writeable = False  # shared by the jobs of this parent
                self._parents.put(key, parent)
            height, width = parent.shape[:2]
            mask = masks.decode_mask_png(mask_png, width, height)
            try:
                result: FixResult = run_fix(parent, mask, engine, params, progress)
                return result
            except ValueError as exc:
                raise EngineError(str(exc)) from None

        return work

    async def started(self, job: Job) -> None:
        def write(room: Room) -> None:
            entry = _job_entry(room, job)
            entry[schema.Job.STATUS] = JobStatus.RUNNING.value
            entry[schema.Job.STARTED_AT] = time.time()
            entry[schema.Job.POSITION] = 0
            entry[schema.Job.STEP] = 0
            entry[schema.Job.ERROR] = None

        await self.rooms.server_write(job.session_id, write)
        await self.refresh_positions()

    async def progress(self, job: Job, step: int, total: int, preview: Any) -> None:
        preview_id = None
        if isinstance(preview, np.ndarray):
            png = await anyio.to_thread.run_sync(_encode_png, preview)
            # A preview is superseded within a second; losing it in a power cut is fine.
            preview_id = await self.blobs.put(png, durable=False)

        def write(room: Room) -> None:
            entry = room.jobs.get(job.id)
            if isinstance(entry, Map) and entry.get(schema.Job.STATUS) == "running":
                entry[schema.Job.STEP] = step
                entry[schema.Job.TOTAL] = total
                if preview_id is not None:
                    entry[schema.Job.PREVIEW] = preview_id

        await self.rooms.server_write(job.session_id, write)

    async def result(self, job: Job, output: Any) -> tuple[str, dict[str, Any]]:
        assert isinstance(output, FixResult)
        png = await anyio.to_thread.run_sync(_encode_png, output.patch)
        patch_id = await self.blobs.put(png)
        payload = job.payload
        layer_id = layer_id_for(job.id)
        layer = {
            schema.Layer.ID: layer_id,
            schema.Layer.PIN_ID: job.pin_id,
            schema.Layer.PATCH: patch_id,
            schema.Layer.BOX: list(output.box),
            schema.Layer.PARENT: payload.get("parent"),
            schema.Layer.SOURCE: LayerSource.INPAINT.value,
            schema.Layer.PARAMS: {
                **self._engine_info,
                **payload["params"],
                "job": job.id,
                "variant": payload["variant"],
                "mask": payload["mask"],
                "crops": [list(c) for c in output.crops],
                **output.details,
            },
            schema.Layer.AUTHOR: payload["author"],
            schema.Layer.CREATED_AT: time.time(),
            schema.Layer.STATE: LayerState.PENDING.value,
        }
        return layer_id, layer

    async def publish(self, job: Job, layer: dict[str, Any]) -> None:
        def write(room: Room) -> None:
            layer_id = layer[schema.Layer.ID]
            if not any(
                isinstance(existing, Map) and existing.get(schema.Layer.ID) == layer_id
                for existing in room.layers
            ):
                room.layers.append(Map({**layer, schema.Layer.DECISIONS: Map()}))
                _pin_links(room, job.pin_id, schema.Pin.LAYERS).append(layer_id)
            entry = _job_entry(room, job)
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
        def write(room: Room) -> None:
            entry = _job_entry(room, job)
            entry[schema.Job.STATUS] = job.status.value
            entry[schema.Job.ERROR] = job.error if job.status is JobStatus.FAILED else None
            entry[schema.Job.FINISHED_AT] = job.finished_at
            if job.status is JobStatus.QUEUED:
                entry[schema.Job.STEP] = 0

        await self.rooms.server_write(job.session_id, write)
        await self.refresh_positions()
        kind = {JobStatus.FAILED: events.JOB_FAILED, JobStatus.CANCELLED: events.JOB_CANCELLED}
        if job.status in kind:  # not when a job is requeued
            self.bus.publish(
                events.Event(
                    kind[job.status],
                    job.session_id,
                    {"job": job.id, "pin": job.pin_id, "error": job.error},
                )
            )


class _ParentCache:
    """The last few decoded parent images, keyed by (base blob, parent layer)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str | None], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str | None]) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, str | None], value: np.ndarray) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


async def open_pin(
    records: Records, rooms: RoomManager, session_id: str, pin_id: str
) -> tuple[SessionRecord, Room, Map[Any]]:
    """The session, its live room and one of its pins, which must be open for new versions."""
    session = await records.get_session(session_id)
    if session is None:
        raise NotFound("no such session")
    room = await rooms.acquire(session_id)
    pin = room.pins.get(pin_id)
    if not isinstance(pin, Map):
        raise NotFound("no such pin in this session")
    if pin.get(schema.Pin.STATUS) == PinStatus.RESOLVED.value:
        raise Conflict("the pin is resolved; reopen it before asking for a new version")
    return session, room, pin


def draft_prompt(pin: Map[Any]) -> str:
    """A first prompt from the pin's words and its thread (the editor can change it)."""
    parts = [str(pin.get(schema.Pin.TEXT) or "").strip()]
    thread = pin.get(schema.Pin.THREAD)
    if isinstance(thread, Array):
        for comment in thread:
            if isinstance(comment, Map) and not comment.get(schema.Comment.DELETED):
                parts.append(str(comment.get(schema.Comment.TEXT) or "").strip())
    return ". ".join(p for p in parts if p)[:MAX_PROMPT_CHARS]


def _job_entry(room: Room, job: Job) -> Map[Any]:
    """The job's map in the document, created (queued) if it is not there yet."""
    entry = room.jobs.get(job.id)
    if isinstance(entry, Map):
        return entry
    fresh: Map[Any] = Map(
        {
            schema.Job.PIN_ID: job.pin_id,
            schema.Job.STATUS: JobStatus.QUEUED.value,
            schema.Job.STEP: 0,
            schema.Job.TOTAL: int(job.payload["params"]["steps"]),
            schema.Job.PREVIEW: None,
            schema.Job.POSITION: 0,
            schema.Job.ERROR: None,
            schema.Job.LAYER: None,
            schema.Job.CREATED_AT: job.created_at,
            schema.Job.STARTED_AT: None,
            schema.Job.FINISHED_AT: None,
        }
    )
    room.jobs[job.id] = fresh
    return fresh


def _pin_links(room: Room, pin_id: str, field: str) -> Array[Any]:
    pin = room.pins[pin_id]
    links = pin.get(field)
    if isinstance(links, Array):
        return links
    fresh: Array[Any] = Array()
    pin[field] = fresh
    return fresh


def _last_approved_layer(room: Room) -> str | None:
    approved = [
        lay.get(schema.Layer.ID)
        for lay in room.layers
        if isinstance(lay, Map) and lay.get(schema.Layer.STATE) == LayerState.APPROVED.value
    ]
    return approved[-1] if approved else None


def _approved_chain(room: Room, parent: str | None) -> list[dict[str, Any]]:
    """Approved layers in document order, up to and including ``parent``."""
    if parent is None:
        return []
    chain = []
    for lay in room.layers:
        if not isinstance(lay, Map):
            continue
        if lay.get(schema.Layer.STATE) == LayerState.APPROVED.value:
            chain.append({"patch": lay[schema.Layer.PATCH], "box": list(lay[schema.Layer.BOX])})
        if lay.get(schema.Layer.ID) == parent:
            return chain
    raise EngineError(f"the parent layer {parent} is gone")


def _decode_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _encode_png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=3)
    return out.getvalue()


__all__ = ["Fixes", "ProofroomError", "draft_prompt", "layer_id_for"]
