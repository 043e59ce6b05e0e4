"""A session's stack of revisions (DESIGN.md sections 3 and 6): upscale and animate requests.

A request (``POST /api/sessions/{id}/upscale`` or ``/animate``) is validated here and
queued as one job of kind ``upscale`` or ``animate``; decisions on a whole revision are made
here too. The worker runs those jobs with :class:`.revision_runner.RevisionJobRunner`
(through the edit runner, which hands these kinds over), and the ``revisions`` root itself
is read and written through :mod:`.revision_document`.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from pycrdt import Map

from ...shared import schema
from ...shared.enums import (
    JobKind,
    LayerState,
    RevisionMedia,
)
from ...shared.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from ...shared.permissions import Action
from ..engines import EngineError
from ..engines.kinds import ClipSpec, UpscaleParams
from ..engines.registry import DEFAULTS, ENGINES, EnginePool, engine_class
from ..identity import Identity
from ..jobs.queue import Job, JobQueue, NewJob
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.records import Records, SessionRecord, audit_statement
from . import events
from .document import last_approved_layer
from .fix_request import EngineUnavailable
from .queue_positions import QueuePositions
from .revision_document import (
    CARRY,
    find_revision,
    revision_job_entry,
    revision_of,
)
from .revision_runner import RevisionJobRunner

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
#: The camera moves a clip may ask for (ClipSpec.motion).
MOTIONS = ("push-in", "pan-left", "pan-right", "parallax")
#: The longest side of a clip made at its source's size when the request names none.
DEFAULT_CLIP_SIDE = 1280


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
