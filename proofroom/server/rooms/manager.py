"""Loads rooms on first join, runs them under one task group, unloads idle ones."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..metrics import Metrics
from ..store.doclog import DocLog
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
    ) -> None:
        #: Told about pin changes after each commit (see :data:`PinListener`).
        self.pin_listener = pin_listener
        self._doclog = doclog
        self._metrics = metrics
        self._max_doc_bytes = max_doc_bytes
        self._compact_after = compact_after_updates
        self._idle_seconds = idle_seconds
        self.rooms: dict[str, Room] = {}
        self._stopping: dict[str, asyncio.Event] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> RoomManager:
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
        for room in self.rooms.values():
            room.stop()
        self._tg.cancel_scope.deadline = anyio.current_time() + 10
        for done in list(self._stopping.values()):
            await done.wait()
        # The sweeper never ends on its own.
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(exc_type, exc, tb)

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
                stopping = self._stopping.get(session_id)
                if stopping is not None:
                    await stopping.wait()  # its last tick must commit before we reload
                room = Room(
                    session_id,
                    self._doclog,
                    self._metrics,
                    max_doc_bytes=self._max_doc_bytes,
                    compact_after_updates=self._compact_after,
                    pin_listener=self._on_pins,
                )
                await room.load()
                self.rooms[session_id] = room
                assert self._tg is not None
                done = asyncio.Event()
                self._stopping[session_id] = done
                self._tg.start_soon(self._run_room, room, done)
                logger.info("room %s loaded", session_id)
            return room

    def _on_pins(self, room: Room, pins: dict[str, dict[str, Any] | None], initial: bool) -> None:
        if self.pin_listener is not None:
            self.pin_listener(room, pins, initial)

    async def server_write(self, session_id: str, fn: Callable[[Room], Any]) -> Any:
        """Run a server transaction on a session's document (loading it if needed)."""
        room = await self.acquire(session_id)
        return await room.server_write(fn)

    async def _run_room(self, room: Room, done: asyncio.Event) -> None:
        try:
            await room.run()
        finally:
            done.set()
            if self._stopping.get(room.session_id) is done:
                del self._stopping[room.session_id]

    async def _unload(self, room: Room) -> None:
        if self.rooms.get(room.session_id) is room:
            del self.rooms[room.session_id]
        done = self._stopping.get(room.session_id)
        room.stop()
        if done is not None:
            await done.wait()
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
