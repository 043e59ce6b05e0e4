"""The ``revisions`` root as the server reads and writes it (DESIGN.md section 3).

The original upload is revision ``v1``; it is written into the root (from the session's
record) the first time another revision joins it, so documents from before revisions need
no migration: an absent ``revision`` on a pin or layer means ``v1``. Everything here runs
inside a room's server write or reads the live document.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Map

from ...shared import schema
from ...shared.enums import (
    JobStatus,
    LayerState,
    RevisionKind,
    RevisionMedia,
)
from ..jobs.queue import Job
from ..rooms import Room
from ..store.records import SessionRecord

#: What a request may do with the source's open pins.
CARRY = ("open", "none")


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
