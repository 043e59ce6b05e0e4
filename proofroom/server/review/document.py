"""The document as fixes see it: a pin to fix, its job entries, its links, the approved chain.

Every function here runs inside a room's server write (or reads the live document); none
does I/O of its own.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Map

from ...shared import schema
from ...shared.enums import JobKind, JobStatus, LayerState, PinStatus
from ...shared.errors import Conflict, NotFound
from ..engines import EngineError
from ..jobs.queue import Job
from ..rooms import Room, RoomManager
from ..store.records import Records, SessionRecord


def layer_id_for(job_id: str) -> str:
    """The one layer a job can produce."""
    return f"l_{job_id}"


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
    revision = pin.get(schema.Pin.REVISION)
    if revision and revision != schema.ORIGINAL_REVISION:
        raise Conflict(
            f"this pin is on revision {revision}; fixes and versions change the original (v1):"
            " pin the original, or change it there and make the revision again"
        )
    return session, room, pin


def job_entry(room: Room, job: Job) -> Map[Any]:
    """The job's map in the document, created (queued) if it is not there yet."""
    entry = room.jobs.get(job.id)
    if isinstance(entry, Map):
        return entry
    fresh: Map[Any] = Map(
        {
            schema.Job.PIN_ID: job.pin_id,
            schema.Job.KIND: (job.kind or JobKind.EDIT).value,
            schema.Job.ENGINE: job.engine or job.payload.get("engine"),
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


def pin_links(room: Room, pin_id: str, field: str) -> Array[Any]:
    """The pin's array of linked ids (``jobs`` or ``layers``), created if missing."""
    pin = room.pins[pin_id]
    links = pin.get(field)
    if isinstance(links, Array):
        return links
    fresh: Array[Any] = Array()
    pin[field] = fresh
    return fresh


def last_approved_layer(room: Room) -> str | None:
    """The newest approved layer: the parent of a new version."""
    approved = [
        lay.get(schema.Layer.ID)
        for lay in room.layers
        if isinstance(lay, Map) and lay.get(schema.Layer.STATE) == LayerState.APPROVED.value
    ]
    return approved[-1] if approved else None


def approved_chain(room: Room, parent: str | None) -> list[dict[str, Any]]:
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
