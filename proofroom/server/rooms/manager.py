"""Loads rooms on first join, unloads idle ones once their last change is durable."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ...shared.errors import RoomUnavailable
from ..metrics import Metrics
from ..store.db import Statement
from ..store.doclog import DocLog
from .awareness import PresenceLimits
from .compaction import Compactor
from .room import PinListener, Room

logger = logging.getLogger(__name__)


class RoomManager:
    """Every live room of the server; use as ``async with RoomManager(...)``."""

    def __init__(
        self,
        doclog: DocLog,
        metrics: Metrics,
        *,
        max_doc_bytes: int,
        compact_after_updates: int,
        idle_seconds: float,
        pin_listener: PinListener | None = None,
        presence: PresenceLimits | None = None,
        native_events: bool = True,
    ) -> None:
        #: Told about pin changes after each commit (see :data:`PinListener`).
        self.pin_listener = pin_listener
        self._doclog = doclog
        self._metrics = metrics
        self._max_doc_bytes = max_doc_bytes
        self._compact_after = compact_after_updates
        self._idle_seconds = idle_seconds
        self._presence = presence
        self._native_events = native_events
        self.rooms: dict[str, Room] = {}
        #: Rooms being unloaded, until their last change is durable.
        self._unloading: dict[str, Room] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tg: TaskGroup | None = None
        #: Merges rooms' logs into snapshots off the event loop.
        self.compactor = Compactor()

    async def __aenter__(self) -> RoomManager:
        await self.compactor.__aenter__()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._sweep)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        rooms = [*self.rooms.values(), *self._unloading.values()]
        for room in rooms:
            room.stop()
        with anyio.move_on_after(10):
            for room in rooms:
                await room.drained()
        # The sweeper never ends on its own.
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            await self.compactor.__aexit__(exc_type, exc, tb)

    async def acquire(self, session_id: str) -> Room:
        """The live room of a session, loading it from the log if needed."""
        room = self.rooms.get(session_id)
        if room is not None and not room.failed:
            room.last_active = time.monotonic()
            return room
        lock = self._locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            room = self.rooms.get(session_id)
            if room is not None and room.failed:
                await self._unload(room)
                room = None
            if room is None:
                unloading = self._unloading.get(session_id)
                if unloading is not None:
                    await unloading.drained()  # its last change must commit before we reload
                room = Room(
                    session_id,
                    self._doclog,
                    self._metrics,
                    max_doc_bytes=self._max_doc_bytes,
                    compact_after_updates=self._compact_after,
                    pin_listener=self._on_pins,
                    presence=self._presence,
                    native_events=self._native_events,
                    compactor=self.compactor,
                )
                await room.load()
                self.rooms[session_id] = room
                logger.info("room %s loaded", session_id)
            return room

    def _on_pins(self, room: Room, pins: dict[str, dict[str, Any] | None], initial: bool) -> None:
        if self.pin_listener is not None:
            self.pin_listener(room, pins, initial)

    async def server_write(
        self,
        session_id: str,
        fn: Callable[[Room], Any],
        statements: Callable[[Any], Sequence[Statement]] | None = None,
    ) -> Any:
        """Run a server transaction on a session's document (loading it if needed)."""
        for _ in range(3):
            room = await self.acquire(session_id)
            try:
                return await room.server_write(fn, statements)
            except RoomUnavailable:
                # Unloaded between the acquire and the write, nothing applied: once more.
                if self.rooms.get(session_id) is room and not room.failed:
                    raise
        raise RoomUnavailable("the session's document is unavailable; try again")

    async def _unload(self, room: Room) -> None:
        if self.rooms.get(room.session_id) is room:
            del self.rooms[room.session_id]
        room.stop()
        self._unloading[room.session_id] = room
        try:
            await room.drained()
        finally:
            if self._unloading.get(room.session_id) is room:
                del self._unloading[room.session_id]
        logger.info("room %s unloaded", room.session_id)

    async def _sweep(self) -> None:
        interval = max(0.05, min(5.0, self._idle_seconds / 2))
        while True:
            await anyio.sleep(interval)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                if room.idle and now - room.last_active >= self._idle_seconds:
                    await self._unload(room)

    @property
    def connection_count(self) -> int:
        return sum(len(room.peers) for room in self.rooms.values())
