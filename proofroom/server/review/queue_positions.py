"""Each queued job's place in its lane's queue, written into its session's document."""

from __future__ import annotations

from pycrdt import Map

from ...shared import schema
from ..jobs.queue import JobQueue
from ..rooms import Room, RoomManager


class QueuePositions:
    """Remembers the positions last written, so only changed ones cost a document write."""

    def __init__(self, queue: JobQueue, rooms: RoomManager) -> None:
        self.queue = queue
        self.rooms = rooms
        self._positions: dict[str, int] = {}

    async def refresh(self) -> None:
        """Write each queued job's position (1 = next) into its document, if it changed.

        Positions count within a lane: a hosted job waits only for other hosted jobs.
        """
        queued = await self.queue.queued()
        positions: dict[str, int] = {}
        counts: dict[str, int] = {}
        for job in queued:
            counts[job.lane] = counts.get(job.lane, 0) + 1
            positions[job.id] = counts[job.lane]
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
