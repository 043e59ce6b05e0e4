"""One participant's websocket: reads frames, queues sends, enforces per-connection limits."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from ...shared import codec
from ...shared.protocol import CloseCode, MessageType, SyncStep
from ..identity import Identity
from ..metrics import Metrics
from .limits import TokenBucket
from .room import Room

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """The part of an ASGI websocket a connection uses (Starlette's WebSocket fits)."""

    async def receive(self) -> MutableMapping[str, Any]: ...
    async def send_bytes(self, data: bytes) -> None: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(frozen=True)
class ConnectionLimits:
    updates_per_second: float
    updates_burst: int
    awareness_per_second: float
    awareness_burst: int
    max_send_queue_bytes: int


class Connection:
    """A joined participant. ``read_loop`` and ``write_loop`` run side by side."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity,
        room: Room,
        limits: ConnectionLimits,
        metrics: Metrics,
    ) -> None:
        self.identity = identity
        self.room = room
        self._transport = transport
        self._limits = limits
        self._metrics = metrics
        self._updates = TokenBucket(limits.updates_per_second, limits.updates_burst)
        self._awareness = TokenBucket(limits.awareness_per_second, limits.awareness_burst)
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._finished = False
        #: (code, reason) once the server decided to close this connection.
        self.close_request: tuple[int, str] | None = None

    # -- sending (called from the room and from other connections) --------------------------

    def send(self, message: bytes) -> None:
        if self.close_request is not None or self._finished:
            return
        self._queue.append(message)
        self._queued_bytes += len(message)
        if self._queued_bytes > self._limits.max_send_queue_bytes:
            self.close_soon(CloseCode.TOO_SLOW, "the connection cannot keep up")
        self._wake.set()

    def close_soon(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``."""
        if self.close_request is None:
            self.close_request = (code, reason)
            if code not in (CloseCode.NORMAL, CloseCode.GOING_AWAY):
                self._metrics.closed.inc()
            self._wake.set()

    def finish(self) -> None:
        """The peer is gone: stop the writer without closing."""
        self._finished = True
        self._wake.set()

    async def write_loop(self) -> None:
        transport = self._transport
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and not self._finished:
                    message = self._queue.popleft()
                    self._queued_bytes -= len(message)
                    await transport.send_bytes(message)
                if self._finished:
                    return
                if self.close_request is not None:
                    code, reason = self.close_request
                    await transport.close(code, reason[:120])
                    return
        except (OSError, RuntimeError) as exc:
            # The peer vanished mid-send; the read loop sees the disconnect.
            logger.debug("send failed: %r", exc)

    # -- receiving ------------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Handle frames until the peer leaves or the server closes the connection."""
        room = self.room
        while self.close_request is None:
            message = await self._transport.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                self.close_soon(CloseCode.BAD_MESSAGE, "text frames are not part of the protocol")
                return
            try:
                kind, content = codec.parse_frame(data)
            except codec.MalformedMessage as exc:
                self.close_soon(CloseCode.BAD_MESSAGE, exc.message)
                return
            if kind is MessageType.SYNC:
                if content.step is not SyncStep.STEP1 and not self._updates.take():
                    self.close_soon(CloseCode.RATE_LIMITED, "too many updates per second")
                    return
                room.submit_sync(self, content)
            elif kind is MessageType.AWARENESS:
                if not self._awareness.take():
                    self.close_soon(CloseCode.RATE_LIMITED, "too many awareness updates")
                    return
                relay = room.awareness.apply(self, self.identity, content)
                if relay is not None:
                    self._metrics.awareness.inc()
                    # The sender gets it too: y-websocket clients drop a connection that
                    # has been silent for 30 s, and a lone participant hears only itself.
                    for peer in room.peers:
                        peer.send(relay)
            elif kind is MessageType.QUERY_AWARENESS:
                snapshot = room.awareness.snapshot()
                if snapshot is not None:
                    self.send(snapshot)

    def greet(self) -> None:
        """What a newcomer gets first: the server's state vector and everyone's presence."""
        self.send(codec.sync_step1(self.room.doc.get_state()))
        snapshot = self.room.awareness.snapshot()
        if snapshot is not None:
            self.send(snapshot)

    def leave(self) -> None:
        """Tell everyone this participant's presence is gone."""
        removal = self.room.awareness.remove_owner(self)
        if removal is not None:
            for peer in self.room.peers:
                if peer is not self:
                    peer.send(removal)
