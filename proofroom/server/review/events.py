"""Review events: what happened in which session, for the event stream, webhooks and the
producer's index. Publishing never blocks; each consumer has its own bounded buffer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Event types (the ``type`` field), for consumers to filter on.
SESSION_CREATED = "session.created"
PIN_CREATED = "pin.created"
PIN_RESOLVED = "pin.resolved"
PIN_REOPENED = "pin.reopened"
JOB_QUEUED = "job.queued"
JOB_DONE = "job.done"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
LAYER_CREATED = "layer.created"
LAYER_DECISION = "layer.decision"
REVISION_CREATED = "revision.created"
REVISION_DECISION = "revision.decision"

_ids = itertools.count(1)


@dataclass(frozen=True)
class Event:
    """One thing that happened; ``data`` is JSON-compatible."""

    type: str
    session_id: str
    data: dict[str, Any]
    at: float = field(default_factory=time.time)
    id: int = field(default_factory=lambda: next(_ids))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "session": self.session_id,
            "at": self.at,
            "data": self.data,
        }


class EventBus:
    """Fan-out of events to subscribers (the SSE stream) and listeners (index, webhooks)."""

    def __init__(self, buffer: int = 1000) -> None:
        self._buffer = buffer
        self._queues: set[asyncio.Queue[Event | None]] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` synchronously on every event; it must not block."""
        self._listeners.append(callback)

    def publish(self, event: Event) -> None:
        for callback in self._listeners:
            try:
                callback(event)
            except Exception:
                logger.exception("event listener failed on %s", event.type)
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A subscriber that stopped reading is cut off rather than slowing anyone.
                self._queues.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event | None]]:
        """A queue of every event from now on; ``None`` means the subscriber fell behind."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(self._buffer)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._queues)
