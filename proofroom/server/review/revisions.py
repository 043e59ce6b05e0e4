"""A session's stack of revisions (DESIGN.md sections 3 and 6): upscales and clips.

The original upload is revision ``v1``; it is written into the ``revisions`` root (from the
session's record) the first time another revision joins it, so documents from before
revisions need no migration: an absent ``revision`` on a pin or layer means ``v1``.

A request (``POST /api/sessions/{id}/upscale`` or ``/animate``) is validated here and
queued as one job of kind ``upscale`` or ``animate``; :class:`RevisionJobRunner` is what the
worker runs it with (through the edit runner, which hands these kinds over). A job yields at
most one revision (its id comes from the job's), published with the carried-over pins.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import numpy as np
from pycrdt import Array, Map

from ...shared import schema
from ...shared.enums import (
    JobKind,
    JobStatus,
    LayerState,
    PinStatus,
    RevisionKind,
    RevisionMedia,
)
from ...shared.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ...shared.permissions import Action
from ..engines import EngineError
from ..engines.kinds import ClipResult, ClipSpec, UpscaleParams
from ..engines.registry import DEFAULTS, ENGINES, EnginePool, engine_class
from ..identity import Identity
from ..jobs.queue import Job, JobQueue, NewJob
from ..jobs.worker import Work
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.records import Records, SessionRecord, audit_statement
from . import events, masks
from .document import approved_chain, last_approved_layer
from .fix_request import EngineUnavailable
from .flatten import flatten_layers
from .job_runner import mark_running, write_progress
from .parent_cache import decode_rgb
from .queue_positions import QueuePositions

UPSCALE_FIELDS = frozenset(
    {"factor", "target", "engine", "model", "revision", "carry", "prompt", "seed", "strength"}
)
ANIMATE_FIELDS = frozenset(
    {"seconds", "fps", "motion", "engine", "model", "prompt", "seed", "revision", "width"}
    | {"height", "carry"}
)
#: The size ratios an upscale may ask for (a ``target`` size must come to one of them).
FACTORS = (1.5, 2.0, 3.0, 4.0)
#: What ``carry`` accepts: the source's open pins come along (scaled), or stay behind.
CARRY = ("open", "none")
#: The camera moves a clip may ask for (ClipSpec.motion).
MOTIONS = ("push-in", "pan-left", "pan-right", "parallax")
#: The longest side of a clip made at its source's size when the request names none.
DEFAULT_CLIP_SIDE = 1280


def revision_id_for(job_id: str) -> str:
    """The one revision a job can produce."""
    return f"r_{job_id}"


# -- the document ---------------------------------------------------------------------


def find_revision(room: Room, revision_id: str) -> Map[Any] | None:
    for entry in room.revisions:
        if isinstance(entry, Map) and entry.get(schema.Revision.ID) == revision_id:
            return entry
    return None


def revision_of(entry: Map[Any]) -> str:
    """The revision a pin or layer is on (absent: the original)."""
    value = entry.get(schema.Pin.REVISION)
    return str(value) if value else schema.ORIGINAL_REVISION


def original_entry(session: SessionRecord) -> dict[str, Any]:
    """The ``v1`` entry: the upload as the session's record has it."""
    return {
        schema.Revision.ID: schema.ORIGINAL_REVISION,
        schema.Revision.KIND: RevisionKind.ORIGINAL.value,
        schema.Revision.MEDIA: RevisionMedia.IMAGE.value,
        schema.Revision.IMAGE: session.base_blob,
        schema.Revision.WIDTH: session.width,
        schema.Revision.HEIGHT: session.height,
        schema.Revision.SOURCE: None,
        schema.Revision.PARAMS: {},
        schema.Revision.AUTHOR: session.created_by,
        schema.Revision.CREATED_AT: session.created_at,
        # The upload is what the review starts from; its layers are decided on, not it.
        schema.Revision.STATE: LayerState.APPROVED.value,
    }


def revision_job_entry(room: Room, job: Job) -> Map[Any]:
    """The job's map in the document, created (queued) if it is not there yet."""
    entry = room.jobs.get(job.id)
    if isinstance(entry, Map):
        return entry
    fresh: Map[Any] = Map(
        {
            schema.Job.PIN_ID: None,
            schema.Job.KIND: job.kind.value,
            schema.Job.ENGINE: job.engine,
            schema.Job.STATUS: JobStatus.QUEUED.value,
            schema.Job.STEP: 0,
            schema.Job.TOTAL: int(job.payload.get("total", 1)),
            schema.Job.PREVIEW: None,
            schema.Job.POSITION: 0,
            schema.Job.ERROR: None,
            schema.Job.LAYER: None,
            schema.Job.REVISION: None,
            schema.Job.CREATED_AT: job.created_at,
            schema.Job.STARTED_AT: None,
            schema.Job.FINISHED_AT: None,
        }
    )
    room.jobs[job.id] = fresh
    return fresh


# -- reading requests -----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The still a request starts from: the original's approved state or an image revision."""

    revision: str
    width: int
    height: int
    #: The image revision's blob; None for the original's approved state (base + layers).
    image: str | None
    #: The newest approved layer flattened into the original's approved state.
    parent: str | None
    #: The approved layers flattened into it (ids, in order).
    layers: tuple[str, ...]


def _source(room: Room, session: SessionRecord, body: dict[str, Any], animate: bool) -> Source:
    name = body.get("revision")
    if name is None or name == schema.ORIGINAL_REVISION:
        parent = last_approved_layer(room)
        layers = tuple(
            str(lay.get(schema.Layer.ID))
            for lay in room.layers
            if isinstance(lay, Map)
            and lay.get(schema.Layer.STATE) == LayerState.APPROVED.value
            and revision_of(lay) == schema.ORIGINAL_REVISION
        )
        return Source(schema.ORIGINAL_REVISION, session.width, session.height, None, parent, layers)
    if not isinstance(name, str):
        raise BadRequest("revision must be a revision id")
    entry = find_revision(room, name)
    if entry is None:
        known = [schema.ORIGINAL_REVISION] + [
            str(e.get(schema.Revision.ID)) for e in room.revisions if isinstance(e, Map)
        ]
        raise NotFound(f"no revision {name!r} in this session; it has {sorted(set(known))}")
    if entry.get(schema.Revision.MEDIA) != RevisionMedia.IMAGE.value:
        raise BadRequest(f"revision {name} is a clip; start from a still (an image revision)")
    state = entry.get(schema.Revision.STATE)
    if animate and state != LayerState.APPROVED.value:
        raise Conflict(
            f"revision {name} is {state}, not approved: a clip is made from an approved still"
            " (approve it first, or animate the original's approved state)"
        )
    return Source(
        name,
        int(entry[schema.Revision.WIDTH]),
        int(entry[schema.Revision.HEIGHT]),
        str(entry[schema.Revision.IMAGE]),
        None,
        (),
    )


def _engine(kind: str, body: dict[str, Any], settings: Any) -> tuple[str, str | None]:
    name = body.get("engine") or DEFAULTS[kind]
    known = list(ENGINES[kind])
    if not isinstance(name, str) or name not in ENGINES[kind]:
        raise BadRequest(f"unknown {kind} engine {name!r}; choose one of {known}")
    try:
        cls = engine_class(kind, name)
    except EngineError as exc:
        raise EngineUnavailable(f"the {name} engine is not available here: {exc.message}") from None
    reason = cls.availability(settings)
    if reason is not None:
        raise EngineUnavailable(f"the {name} engine is not available on this server: {reason}")
    model = body.get("model")
    if model is not None:
        offered = list(cls.models)
        if not isinstance(model, str) or (offered and model not in offered):
            raise BadRequest(f"the {name} engine offers the models {offered}")
    return name, model


def _carry(body: dict[str, Any]) -> str:
    carry = body.get("carry", "open")
    if carry not in CARRY:
        raise BadRequest(f"carry must be one of {list(CARRY)}")
    return str(carry)


def _seed(body: dict[str, Any]) -> int:
    seed = body.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise BadRequest("seed must be a whole number from 0 to 2**32 - 1")
    return seed


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str) or len(prompt) > 2000:
        raise BadRequest("prompt must be text of at most 2000 characters")
    return prompt


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_upscale(body: dict[str, Any], source: Source, max_pixels: int) -> UpscaleParams:
    """The request as engine parameters; 400 for a factor not offered, 413 past the limit."""
    factor: Any = body.get("factor")
    target: Any = body.get("target")
    if (factor is None) == (target is None):
        raise BadRequest(f"give a factor (one of {list(FACTORS)}) or a target [width, height]")
    if target is not None:
        if not (isinstance(target, list) and len(target) == 2 and all(_is_int(v) for v in target)):
            raise BadRequest("target must be [width, height] in whole pixels")
        width, height = int(target[0]), int(target[1])
        factor = width / source.width
        if abs(round(source.height * factor) - height) > 1:
            raise BadRequest(
                f"target {width}x{height} changes the picture's shape"
                f" ({source.width}x{source.height}); keep its aspect ratio"
            )
        if not any(abs(factor - f) < 1e-3 + 1 / source.width for f in FACTORS):
            raise BadRequest(
                f"target {width}x{height} is a factor of {factor:.3g}; the factors offered"
                f" are {list(FACTORS)}"
            )
    else:
        if not _number(factor) or float(factor) not in FACTORS:
            raise BadRequest(f"unknown factor {factor!r}; choose one of {list(FACTORS)}")
        factor = float(factor)
        width, height = round(source.width * factor), round(source.height * factor)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{width}x{height} is {width * height} pixels; upscales are limited to"
            f" {max_pixels} (PROOFROOM_MAX_UPSCALE_PIXELS)"
        )
    strength = body.get("strength", 0.25)
    if not _number(strength) or not 0 < strength <= 1:
        raise BadRequest("strength must be a number in (0, 1]")
    return UpscaleParams(
        factor=float(factor),
        width=width,
        height=height,
        prompt=_prompt(body),
        seed=_seed(body),
        strength=float(strength),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_clip(body: dict[str, Any], source: Source, settings: Any) -> ClipSpec:
    """The request as a clip spec; 400 for bad values, 413 past the clip limits."""
    seconds = body.get("seconds", 4.0)
    if not _number(seconds) or seconds <= 0:
        raise BadRequest("seconds must be a positive number")
    if seconds > settings.max_clip_seconds:
        raise PayloadTooLarge(
            f"clips are limited to {settings.max_clip_seconds} seconds (PROOFROOM_MAX_CLIP_SECONDS)"
        )
    fps = body.get("fps", 24)
    if not _is_int(fps) or not 1 <= fps <= settings.max_clip_fps:
        raise BadRequest(
            f"fps must be a whole number from 1 to {settings.max_clip_fps} (PROOFROOM_MAX_CLIP_FPS)"
        )
    motion = body.get("motion", "push-in")
    if motion not in MOTIONS:
        raise BadRequest(f"unknown motion {motion!r}; choose one of {list(MOTIONS)}")
    width, height = body.get("width"), body.get("height")
    if width is None and height is None:
        scale = min(1.0, DEFAULT_CLIP_SIDE / max(source.width, source.height))
        width = max(2, round(source.width * scale / 2) * 2)
        height = max(2, round(source.height * scale / 2) * 2)
    elif width is None or height is None:
        raise BadRequest("give both width and height, or neither (the still's shape)")
    elif not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        raise BadRequest("width and height must be positive whole numbers of pixels")
    elif width % 2 or height % 2:
        raise BadRequest(
            f"{width}x{height}: a clip's width and height must be even (H.264 needs them);"
            f" try {width + width % 2}x{height + height % 2}"
        )
    if width * height > settings.max_clip_pixels:
        raise PayloadTooLarge(
            f"{width}x{height} is {width * height} pixels a frame; clips are limited to"
            f" {settings.max_clip_pixels} (PROOFROOM_MAX_CLIP_PIXELS)"
        )
    if round(seconds * fps) < 1:
        raise BadRequest("the clip would have no frames; ask for more seconds or fps")
    return ClipSpec(
        seconds=float(seconds),
        fps=int(fps),
        width=int(width),
        height=int(height),
        motion=str(motion),
        prompt=_prompt(body),
        seed=_seed(body),
    )


def _spec_json(spec: ClipSpec) -> dict[str, Any]:
    out = asdict(spec)
    out.pop("planes", None)
    return out


# -- requests -------------------------------------------------------------------------


class Revisions:
    """Upscale and animate requests, and what the worker runs them with (:attr:`runner`)."""

    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        rooms: RoomManager,
        queue: JobQueue,
        engines: EnginePool,
        positions: QueuePositions,
        bus: events.EventBus,
        settings: Any,
    ) -> None:
        self.records = records
        self.blobs = blobs
        self.rooms = rooms
        self.queue = queue
        self.bus = bus
        self.settings = settings
        self.positions = positions
        self.runner = RevisionJobRunner(blobs, rooms, engines, positions, bus, records)

    async def upscale(self, session_id: str, body: dict[str, Any], actor: Identity) -> Job:
        actor = actor.require(session_id, Action.EDIT)
        session, room = await self._open(session_id)
        source = _source(room, session, body, animate=False)
        engine, model = _engine("upscale", body, self.settings)
        params = parse_upscale(body, source, self.settings.max_upscale_pixels)
        payload = {
            "params": asdict(params),
            "model": model,
            "total": 1,
        }
        return await self._enqueue(
            session, room, JobKind.UPSCALE, engine, source, payload, _carry(body), actor
        )

    async def animate(self, session_id: str, body: dict[str, Any], actor: Identity) -> Job:
        actor = actor.require(session_id, Action.EDIT)
        session, room = await self._open(session_id)
        source = _source(room, session, body, animate=True)
        engine, model = _engine("animate", body, self.settings)
        spec = parse_clip(body, source, self.settings)
        payload = {
            "params": _spec_json(spec),
            "model": model,
            "total": round(spec.seconds * spec.fps),
        }
        return await self._enqueue(
            session, room, JobKind.ANIMATE, engine, source, payload, _carry(body), actor
        )

    async def _open(self, session_id: str) -> tuple[SessionRecord, Room]:
        session = await self.records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        return session, await self.rooms.acquire(session_id)

    async def _enqueue(
        self,
        session: SessionRecord,
        room: Room,
        kind: JobKind,
        engine: str,
        source: Source,
        payload: dict[str, Any],
        carry: str,
        actor: Identity,
    ) -> Job:
        job = NewJob(
            id=f"j_{secrets.token_hex(6)}",
            session_id=session.id,
            pin_id="",
            kind=kind,
            engine=engine,
            lane="hosted" if engine_class(kind.value, engine).hosted else "local",
            payload={
                **payload,
                "engine": engine,
                "source": asdict(source),
                "base": session.base_blob,
                "carry": carry,
                "author": actor.user_id,
            },
        )
        audit = audit_statement(
            session.id,
            actor,
            f"{kind.value}.request",
            job.id,
            {"engine": engine, "source": source.revision, "carry": carry, **payload["params"]},
        )
        # The job and its audit row commit together (429 past the session's cap).
        (queued,) = await self.queue.enqueue([job], also=[audit])

        def announce(room: Room) -> None:
            revision_job_entry(room, queued)

        await room.server_write(announce)
        self.bus.publish(
            events.Event(
                events.JOB_QUEUED,
                session.id,
                {
                    "job": queued.id,
                    "pin": None,
                    "by": actor.user_id,
                    "kind": kind.value,
                    "engine": engine,
                },
            )
        )
        await self.positions.refresh()
        return queued


# -- running jobs ---------------------------------------------------------------------


def encode_image_png(pixels: np.ndarray) -> bytes:
    """A revision's picture as a PNG, encoded for speed: at 4096 px, Huffman-only deflate
    after the "up" filter takes about a third of the time of PIL's zlib level 1 (1.3 s on
    these cores) and the file is smaller (13.7 MB against 15.9 MB)."""
    import cv2

    if pixels.ndim == 3 and pixels.shape[2] == 4:
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    elif pixels.ndim == 3:
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    else:
        bgr = pixels
    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
        # The "up" filter alone: most of adaptive filtering's gain on photographs, at a
        # fraction of its cost (0.45 s against 0.7 s at 4096 px; 13.7 MB against 10.8 MB).
        cv2.IMWRITE_PNG_FILTER,
        cv2.IMWRITE_PNG_FILTER_UP,
    ]
    ok, data = cv2.imencode(".png", bgr, params)
    if not ok:
        raise EngineError("the revision's picture could not be encoded as a PNG")
    return data.tobytes()


@dataclass
class _Clip:
    mp4: bytes
    webm: bytes
    poster: np.ndarray
    result: ClipResult


class RevisionJobRunner:
    """Runs upscale and animate jobs for the worker (:class:`..jobs.worker.JobRunner`)."""

    def __init__(
        self,
        blobs: BlobStore,
        rooms: RoomManager,
        engines: EnginePool,
        positions: QueuePositions,
        bus: events.EventBus,
        records: Records,
    ) -> None:
        self.blobs = blobs
        self.rooms = rooms
        self.engines = engines
        self.positions = positions
        self.bus = bus
        self.records = records

    async def _still(self, job: Job) -> np.ndarray:
        """The source picture, decoded (RGB: the approved state, or the revision's image)."""
        source = job.payload["source"]
        try:
            if source["image"] is not None:
                return await anyio.to_thread.run_sync(
                    decode_rgb, await self.blobs.get(source["image"])
                )
            base = await self.blobs.get(job.payload["base"])
            room = await self.rooms.acquire(job.session_id)
            layers = approved_chain(room, source["parent"])
            patches = [(await self.blobs.get(lay["patch"]), lay["box"]) for lay in layers]
        except NotFound:
            raise EngineError("the job's source picture is missing from the blob store") from None
        return await anyio.to_thread.run_sync(lambda: flatten_layers(decode_rgb(base), patches))

    async def _planes(
        self, job: Job, width: int, height: int
    ) -> tuple[tuple[np.ndarray, float], ...]:
        """Depth planes for a parallax: the approved layers' masks, nearer the later."""
        source = job.payload["source"]
        room = await self.rooms.acquire(job.session_id)
        ids = set(source["layers"])
        blobs = [
            (lay.get(schema.Layer.PARAMS) or {}).get("mask")
            for lay in room.layers
            if isinstance(lay, Map) and lay.get(schema.Layer.ID) in ids
        ]
        planes = []
        found = [b for b in blobs if isinstance(b, str)]
        for i, blob in enumerate(found):
            try:
                data = await self.blobs.get(blob)
            except NotFound:
                continue
            mask = masks.decode_mask_png(data, width, height)
            planes.append((mask, 0.5 + 0.5 * (i + 1) / len(found)))
        return tuple(planes)

    async def prepare(self, job: Job) -> Work:
        payload = job.payload
        still = await self._still(job)
        name, model = str(job.engine), payload.get("model")
        pool = self.engines
        if job.kind is JobKind.UPSCALE:
            params = UpscaleParams(**payload["params"])

            def upscale(progress: Any) -> tuple[np.ndarray, dict[str, Any]]:
                engine = pool.get_kind("upscale", name, model)
                out = engine.upscale(still, params, progress)
                if out.shape[:2] != (params.height, params.width) or out.dtype != np.uint8:
                    raise EngineError(
                        f"the {name} engine returned {out.shape[1]}x{out.shape[0]}"
                        f" {out.dtype}, not {params.width}x{params.height} uint8"
                    )
                return out, engine.describe()

            return upscale
        planes: tuple[tuple[np.ndarray, float], ...] = ()
        if payload["params"]["motion"] == "parallax" and payload["source"]["image"] is None:
            planes = await self._planes(job, still.shape[1], still.shape[0])
        spec = ClipSpec(**payload["params"], planes=planes)

        def animate(progress: Any) -> _Clip:
            engine = pool.get_kind("animate", name, model)
            out_dir = Path(tempfile.mkdtemp(prefix="proofroom-clip-"))
            try:
                result: ClipResult = engine.animate(still, spec, out_dir, progress)
                clip = _Clip(
                    result.mp4.read_bytes(), result.webm.read_bytes(), result.poster, result
                )
            finally:
                shutil.rmtree(out_dir, ignore_errors=True)
            return _Clip(clip.mp4, clip.webm, clip.poster, _with_engine(result, engine.describe()))

        return animate

    async def started(self, job: Job) -> None:
        def write(room: Room) -> None:
            mark_running(revision_job_entry(room, job))

        await self.rooms.server_write(job.session_id, write)
        await self.positions.refresh()

    async def progress(self, job: Job, step: int, total: int, preview: Any) -> None:
        await write_progress(self.rooms, self.blobs, job, step, total, preview)

    async def result(self, job: Job, output: Any) -> tuple[str, dict[str, Any]]:
        payload = job.payload
        revision_id = revision_id_for(job.id)
        source = payload["source"]
        common = {
            schema.Revision.ID: revision_id,
            schema.Revision.SOURCE: {"revision": source["revision"], "layers": source["layers"]},
            schema.Revision.AUTHOR: payload["author"],
            schema.Revision.CREATED_AT: time.time(),
            schema.Revision.JOB: job.id,
            schema.Revision.STATE: LayerState.PENDING.value,
        }
        base_params = {"engine": job.engine, "kind": job.kind.value, "job": job.id}
        if isinstance(output, _Clip):
            poster = await anyio.to_thread.run_sync(encode_image_png, output.poster)
            mp4, webm, poster_id = (
                await self.blobs.put(output.mp4),
                await self.blobs.put(output.webm),
                await self.blobs.put(poster),
            )
            r = output.result
            entry = {
                **common,
                schema.Revision.KIND: RevisionKind.CLIP.value,
                schema.Revision.MEDIA: RevisionMedia.VIDEO.value,
                schema.Revision.MP4: mp4,
                schema.Revision.WEBM: webm,
                schema.Revision.POSTER: poster_id,
                schema.Revision.WIDTH: r.width,
                schema.Revision.HEIGHT: r.height,
                schema.Revision.FPS: r.fps,
                schema.Revision.FRAMES: r.frames,
                schema.Revision.PARAMS: {
                    **base_params,
                    **payload["params"],
                    "model": payload.get("model"),
                    **r.details,
                },
            }
        else:
            pixels, described = output
            png = await anyio.to_thread.run_sync(encode_image_png, pixels)
            image = await self.blobs.put(png)
            entry = {
                **common,
                schema.Revision.KIND: RevisionKind.UPSCALE.value,
                schema.Revision.MEDIA: RevisionMedia.IMAGE.value,
                schema.Revision.IMAGE: image,
                schema.Revision.WIDTH: int(pixels.shape[1]),
                schema.Revision.HEIGHT: int(pixels.shape[0]),
                schema.Revision.PARAMS: {
                    **described,
                    **base_params,
                    **payload["params"],
                    "model": payload.get("model") or described.get("model"),
                },
            }
        return revision_id, _plain(entry)

    async def publish(self, job: Job, revision: dict[str, Any]) -> None:
        session = await self.records.get_session(job.session_id)
        carry = job.payload.get("carry", "open")

        def write(room: Room) -> dict[str, Any] | None:
            revision_id = revision[schema.Revision.ID]
            carried = None
            if find_revision(room, revision_id) is None:
                if find_revision(room, schema.ORIGINAL_REVISION) is None and session is not None:
                    room.revisions.insert(0, Map({**original_entry(session), "decisions": Map()}))
                carried = _carry_pins(room, revision, carry)
                room.revisions.append(
                    Map(
                        {
                            **revision,
                            schema.Revision.CARRY: carried,
                            schema.Revision.DECISIONS: Map(),
                        }
                    )
                )
            entry = revision_job_entry(room, job)
            entry[schema.Job.STATUS] = JobStatus.DONE.value
            entry[schema.Job.REVISION] = revision_id
            entry[schema.Job.FINISHED_AT] = job.finished_at or time.time()
            entry[schema.Job.STEP] = entry.get(schema.Job.TOTAL)
            return carried

        carried = await self.rooms.server_write(job.session_id, write)
        if carried is not None:
            self.bus.publish(
                events.Event(
                    events.REVISION_CREATED,
                    job.session_id,
                    {
                        "revision": revision[schema.Revision.ID],
                        "kind": revision[schema.Revision.KIND],
                        "source": revision[schema.Revision.SOURCE]["revision"],
                        "author": revision[schema.Revision.AUTHOR],
                        "job": job.id,
                        "carried": len(carried["pins"]),
                        "at": revision[schema.Revision.CREATED_AT],
                    },
                )
            )
        self.bus.publish(
            events.Event(
                events.JOB_DONE,
                job.session_id,
                {"job": job.id, "pin": None, "revision": revision[schema.Revision.ID]},
            )
        )

    async def stopped(self, job: Job) -> None:
        def write(room: Room) -> None:
            entry = revision_job_entry(room, job)
            entry[schema.Job.STATUS] = job.status.value
            entry[schema.Job.ERROR] = job.error if job.status is JobStatus.FAILED else None
            entry[schema.Job.FINISHED_AT] = job.finished_at
            if job.status is JobStatus.QUEUED:
                entry[schema.Job.STEP] = 0

        await self.rooms.server_write(job.session_id, write)
        await self.positions.refresh()
        kind = {JobStatus.FAILED: events.JOB_FAILED, JobStatus.CANCELLED: events.JOB_CANCELLED}
        if job.status in kind:
            self.bus.publish(
                events.Event(
                    kind[job.status],
                    job.session_id,
                    {"job": job.id, "pin": None, "error": job.error},
                )
            )


def _with_engine(result: ClipResult, described: dict[str, Any]) -> ClipResult:
    return ClipResult(
        mp4=result.mp4,
        webm=result.webm,
        poster=result.poster,
        frames=result.frames,
        fps=result.fps,
        width=result.width,
        height=result.height,
        details={**described, **result.details},
    )


def _plain(value: Any) -> Any:
    """JSON-compatible (numpy scalars, tuples and paths from engines' details made plain)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return value.name
    return value


def _carry_pins(room: Room, revision: dict[str, Any], carry: str) -> dict[str, Any]:
    """Copy the source's open pins onto the new revision (scaled), or list them as left."""
    source_id = revision[schema.Revision.SOURCE]["revision"]
    source = find_revision(room, source_id)
    if source is not None:
        src_w, src_h = float(source[schema.Revision.WIDTH]), float(source[schema.Revision.HEIGHT])
    else:
        src_w, src_h = float(room.meta[schema.Meta.WIDTH]), float(room.meta[schema.Meta.HEIGHT])
    sx = revision[schema.Revision.WIDTH] / src_w
    sy = revision[schema.Revision.HEIGHT] / src_h
    open_pins = [
        (str(pin_id), pin)
        for pin_id, pin in room.pins.items()
        if isinstance(pin, Map)
        and revision_of(pin) == source_id
        and pin.get(schema.Pin.STATUS) == PinStatus.OPEN.value
    ]
    if carry == "none":
        return {"mode": carry, "pins": {}, "left": sorted(p for p, _ in open_pins)}
    mapping: dict[str, str] = {}
    revision_id = revision[schema.Revision.ID]
    for pin_id, pin in open_pins:
        new_id = "c_" + hashlib.sha256(f"{revision_id}/{pin_id}".encode()).hexdigest()[:16]
        mapping[pin_id] = new_id
        fields: dict[str, Any] = {
            key: pin.get(key)
            for key in (
                schema.Pin.AUTHOR,
                schema.Pin.TEXT,
                schema.Pin.STATUS,
                schema.Pin.CREATED_AT,
            )
        }
        fields[schema.Pin.X] = float(pin.get(schema.Pin.X) or 0) * sx
        fields[schema.Pin.Y] = float(pin.get(schema.Pin.Y) or 0) * sy
        region = pin.get(schema.Pin.REGION)
        if region is not None:
            x, y, w, h = (float(v) for v in region)
            fields[schema.Pin.REGION] = [x * sx, y * sy, w * sx, h * sy]
        fields[schema.Pin.REVISION] = revision_id
        fields[schema.Pin.CARRIED_FROM] = pin_id
        thread = pin.get(schema.Pin.THREAD)
        comments = thread.to_py() if isinstance(thread, Array) else []
        fields[schema.Pin.THREAD] = Array([Map(c) for c in comments or []])
        room.pins[new_id] = Map(fields)
    return {"mode": carry, "pins": mapping, "left": []}
