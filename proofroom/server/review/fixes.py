"""Fix requests: from a pin to queued edit jobs, and cancelling them.

The parts live beside this module, one concept each: ``fix_request`` (reading a request:
engine, model, parameters, the drafted prompt), ``queue_positions``, ``job_runner`` (what
the worker calls), ``parent_cache`` (decoded parents, PNG coding) and ``document`` (the
pins, job entries and layers fixes touch).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import Any

import anyio.to_thread
import numpy as np
from pycrdt import Map

from ...shared import schema
from ...shared.enums import JobStatus
from ...shared.errors import BadRequest, NotFound, ProofroomError
from ...shared.permissions import Action
from ..engines.registry import EnginePool
from ..identity import Identity
from ..jobs.queue import Job, JobQueue, NewJob
from ..jobs.worker import Worker
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.records import Records, audit_statement
from . import events, masks
from .document import (
    approved_chain,
    job_entry,
    last_approved_layer,
    layer_id_for,
    open_pin,
    pin_links,
)
from .fix_request import (
    FIELDS,
    LIMITS,
    MAX_PROMPT_CHARS,
    choose_request_engine,
    draft_prompt,
    parse_fix_request,
)
from .job_runner import FixJobRunner
from .parent_cache import decode_rgb
from .queue_positions import QueuePositions

# The names other review modules imported from here before the split (kept so they work).
_approved_chain = approved_chain
_decode_rgb = decode_rgb
_last_approved_layer = last_approved_layer
_pin_links = pin_links


class Fixes:
    """Fix requests and cancellation; :attr:`runner` is what the worker runs jobs with."""

    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        rooms: RoomManager,
        queue: JobQueue,
        engines: EnginePool,
        bus: events.EventBus,
    ) -> None:
        self.bus = bus
        self.records = records
        self.blobs = blobs
        self.rooms = rooms
        self.queue = queue
        self.engines = engines
        self.worker: Worker | None = None
        self.positions = QueuePositions(queue, rooms)
        self.runner = FixJobRunner(blobs, rooms, engines, self.positions, bus)
        default = engines.default
        self.default_engine = default.name
        self.default_model: str | None = default.describe().get("model")

    async def request(
        self, session_id: str, pin_id: str, body: dict[str, Any], actor: Identity
    ) -> list[Job]:
        """Validate a fix request and queue one job per variant, atomically."""
        actor = actor.require(session_id, Action.EDIT)
        engine = choose_request_engine(
            body, self.engines.settings, self.default_engine, self.default_model
        )
        session, room, pin = await open_pin(self.records, self.rooms, session_id, pin_id)
        fix = parse_fix_request(body, pin, engine)
        params = fix.params
        mask = await self._mask(body, pin, session.width, session.height)
        mask = self._subtract_locks(mask, room)
        if mask.all():
            raise BadRequest("the mask covers the whole image; fix a part of it")
        mask_png = await anyio.to_thread.run_sync(masks.encode_mask_png, mask)
        mask_blob = hashlib.sha256(mask_png).hexdigest()
        parent = last_approved_layer(room)
        ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        box = [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
        fix_id = f"f_{secrets.token_hex(6)}"  # one request, one round: its variants share it
        jobs = [
            NewJob(
                id=f"j_{secrets.token_hex(6)}",
                session_id=session_id,
                pin_id=pin_id,
                priority=fix.priority,
                engine=fix.engine.name,
                lane=fix.engine.lane,
                payload={
                    "params": {**params.to_json(), "seed": (params.seed + i) % 2**32},
                    "engine": fix.engine.name,
                    "variant": i,
                    "variants": fix.variants,
                    "fix": fix_id,
                    "mask": mask_blob,
                    "box": box,
                    "base": session.base_blob,
                    "parent": parent,
                    "author": actor.user_id,
                },
            )
            for i in range(fix.variants)
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
            {
                "jobs": [j.id for j in jobs],
                "mask": mask_blob,
                "engine": fix.engine.name,
                **params.to_json(),
            },
        )
        _, queued = await asyncio.gather(
            self.blobs.put(mask_png), self.queue.enqueue(jobs, wake=False, also=[audit])
        )
        self.queue.wakeup.set()

        def announce(room: Room) -> None:
            for job in queued:
                job_entry(room, job)
            pin_links(room, pin_id, schema.Pin.JOBS).extend([j.id for j in queued])

        await room.server_write(announce)
        for job in queued:
            self.bus.publish(
                events.Event(
                    events.JOB_QUEUED,
                    session_id,
                    {
                        "job": job.id,
                        "pin": pin_id,
                        "by": actor.user_id,
                        "kind": job.kind.value,
                        "engine": job.engine,
                    },
                )
            )
        await self.positions.refresh()
        return queued

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
            await self.runner.stopped(cancelled)
        return cancelled

    async def refresh_positions(self) -> None:
        """Write each queued job's place in its queue into its document (if it changed)."""
        await self.positions.refresh()


__all__ = [
    "FIELDS",
    "LIMITS",
    "MAX_PROMPT_CHARS",
    "Fixes",
    "ProofroomError",
    "_approved_chain",
    "_decode_rgb",
    "_last_approved_layer",
    "_pin_links",
    "draft_prompt",
    "layer_id_for",
    "open_pin",
]
