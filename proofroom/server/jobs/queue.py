"""The queue interface every backend implements (and one contract test suite checks)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...shared.enums import JobKind, JobStatus
from ..store.db import Statement

#: Which workers claim a job: ``local`` jobs take turns on this machine's device, one at a
#: time; ``hosted`` jobs wait on a remote service, several at once, beside the local one.
LANES = ("local", "hosted")


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue."""

    id: str
    session_id: str
    pin_id: str
    payload: dict[str, Any]
    priority: int = 0
    #: What the job makes (an edit layer now; upscales and clips later).
    kind: JobKind = JobKind.EDIT
    #: The engine that runs it; None for jobs queued before engines were chosen per request.
    engine: str | None = None
    #: One of :data:`LANES`.
    lane: str = "local"


@dataclass(frozen=True)
class Job:
    """A job as the queue holds it."""

    id: str
    session_id: str
    pin_id: str
    status: JobStatus
    priority: int
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_owner: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    layer_id: str | None
    result: dict[str, Any] | None = None
    kind: JobKind = JobKind.EDIT
    engine: str | None = None
    lane: str = "local"

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class JobQueue(ABC):
    """Enqueue, claim with a lease, heartbeat, complete, fail, cancel.

    Claims take turns between sessions (the session served longest ago first; one never
    served counts as served longest ago), then, within the session, go by priority (higher
    first) and enqueue order: a priority orders one session's jobs, never another's. A
    backend may cap the unfinished jobs of one session (``enqueue`` raises RateLimited,
    queueing none). A job whose lease expires goes back to
    the queue until it has used ``max_attempts``, then fails. Every change is announced on
    :attr:`changed` so the server can mirror job states into documents.
    """

    def __init__(self) -> None:
        #: Set whenever jobs are enqueued, so an idle worker wakes at once.
        self.wakeup = asyncio.Event()

    @abstractmethod
    async def enqueue(
        self, jobs: list[NewJob], *, wake: bool = True, also: Sequence[Statement] = ()
    ) -> list[Job]:
        """Add jobs atomically (all or none); ``wake=False`` leaves waking workers to you.

        ``also``: single-row ``INSERT ... VALUES`` statements (the audit row) committed in
        the same transaction, and only if the jobs are queued. RateLimited when a session
        would hold more unfinished jobs than the backend allows.
        """

    @abstractmethod
    async def claim(self, owner: str, lease_seconds: float, lane: str = "local") -> Job | None:
        """Take the next job of ``lane``, leased to ``owner``; None when none is queued."""

    @abstractmethod
    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend a lease; False if the job is no longer ours (lost, cancelled, finished)."""

    @abstractmethod
    async def complete(
        self, job_id: str, owner: str, layer_id: str, result: dict[str, Any]
    ) -> Job | None:
        """Mark done, keeping the layer to publish; None if the job was no longer ours.

        Winning this call is what entitles a worker to publish the layer: a job cancelled
        first is not completed, and a completed job cannot be cancelled.
        """

    @abstractmethod
    async def mark_published(self, job_id: str) -> None:
        """The job's layer is in its session's document."""

    @abstractmethod
    async def unpublished(self) -> list[Job]:
        """Done jobs whose layer may not have reached the document (after a crash)."""

    @abstractmethod
    async def fail(self, job_id: str, owner: str, error: str, *, retry: bool) -> Job | None:
        """Give up on this attempt: requeue (if ``retry`` and attempts remain) or fail."""

    @abstractmethod
    async def cancel(self, job_id: str, *, also: Sequence[Statement] = ()) -> Job:
        """Cancel a queued or running job; Conflict if it already finished.

        ``also`` as for :meth:`enqueue`: committed with the cancellation, only if it happens.
        """

    @abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """One job."""

    @abstractmethod
    async def expire_leases(self, now: float | None = None) -> list[Job]:
        """Requeue or fail running jobs whose lease expired; return those changed."""

    @abstractmethod
    async def release_owner(self, owner_prefix: str, keep: str) -> list[Job]:
        """Requeue running jobs leased to dead workers of this node (``owner_prefix``)."""

    @abstractmethod
    async def queued(self) -> list[Job]:
        """Queued jobs, each lane's in its claim order (for queue positions, which count
        within a lane: a hosted job does not wait behind local ones)."""
