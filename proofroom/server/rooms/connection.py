"""One participant's websocket: reads frames, sends, enforces per-connection limits.

Receiving is direct where the server offers it: each binary message is handled from the
socket's own read callback, without a queue or a task switch; otherwise the read loop
takes messages from the ASGI ``receive()``. Either way one connection's messages are
handled one at a time, in order.

Sending is eager: while nothing is queued for a connection, a message is written from the
caller's own stack (a room's commit callback, another connection's read loop), without a
task switch, and through the server's prepared-frame send where it offers one (framed once
for all of a room's participants). Only when the transport pushes back (its buffer is
full) does a message wait in the connection's queue for its write loop, which also owns
every message after it, so the order never changes. Both fast paths rest on private
internals (web/fanout.py, rooms/eager.py); with ``PROOFROOM_FAST_PATHS=off`` neither is
offered and every message goes through the write loop's awaited sends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.websockets import WebSocketDisconnect

from ...shared import codec
from ...shared.protocol import CloseCode, MessageType, SyncStep
from ..identity import Identity
from ..metrics import Metrics
from .awareness import PresenceRefused
from .eager import finish_send
from .limits import TokenBucket
from .room import REFUSALS_BURST, REFUSALS_PER_SECOND, Room

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """The part of an ASGI websocket a connection uses (Starlette's WebSocket fits)."""

    async def receive(self) -> MutableMapping[str, Any]: ...
    def send_bytes(self, data: bytes) -> Coroutine[Any, Any, None]: ...
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
        *,
        send_frame: Callable[[bytes], bool] | None = None,
        attach_receiver: Callable[[Callable[[bytes], None]], bool] | None = None,
        eager: bool = True,
    ) -> None:
        self.identity = identity
        #: Start sends on the caller's stack (rooms/eager.py); False: the write loop awaits
        #: every send (the public-API path).
        self._eager = eager
        #: The server's synchronous send of a prepared frame, where it offers one: it
        #: returns False when the ordinary (awaitable) send must be used instead.
        self._send_frame = send_frame
        #: The server's direct delivery of incoming messages, where it offers one: it
        #: returns False while messages wait for :meth:`read_loop` (see web/fanout.py).
        self._attach_receiver = attach_receiver
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
        #: True while the write loop owns the transport (something queued or in flight).
        self._busy = False
        #: A send that suspended on its first step, for the write loop to finish.
        self._inflight: tuple[Coroutine[Any, Any, None], Any] | None = None
        #: (code, reason) once the server decided to close this connection.
        self.close_request: tuple[int, str] | None = None
        #: Changes of this connection the write guard refused so far, and their rate.
        self.refusals = 0
        self.refusal_tokens = TokenBucket(REFUSALS_PER_SECOND, REFUSALS_BURST)

    @property
    def fast_paths(self) -> frozenset[str]:
        """The fast paths this connection takes: ``send_frame``, ``receive_direct``, ``eager``."""
        taken = {
            "send_frame": self._send_frame is not None,
            "receive_direct": self._attach_receiver is not None,
            "eager": self._eager,
        }
        return frozenset(name for name, on in taken.items() if on)

    # -- sending (called from the room and from other connections) --------------------------

    def send(self, message: bytes) -> None:
        if self.close_request is not None or self._finished:
            return
        if not self._busy:
            if self._send_frame is not None and self._send_frame(message):
                return
            if self._eager:
                self._send_now(message)
                return
            self._busy = True  # the write loop sends it, and owns what follows
        else:
            self._metrics.sends_waited.inc()
        self._queue.append(message)
        self._queued_bytes += len(message)
        if self._queued_bytes > self._limits.max_send_queue_bytes:
            self.close_soon(CloseCode.TOO_SLOW, "the connection cannot keep up")
        self._wake.set()

    def _send_now(self, message: bytes) -> None:
        coro = self._transport.send_bytes(message)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return  # written
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            logger.debug("send failed: %r", exc)
            self.finish()  # the peer vanished; the read loop sees the disconnect
            return
        # The transport pushes back: the write loop finishes this send, then the rest.
        self._inflight = (coro, waiting_on)
        self._busy = True
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
                if self._inflight is not None:
                    coro, waiting_on = self._inflight
                    self._inflight = None
                    await finish_send(coro, waiting_on)
                while self._queue and not self._finished:
                    message = self._queue.popleft()
                    self._queued_bytes -= len(message)
                    await transport.send_bytes(message)
                self._busy = False
                if self._finished:
                    return
                if self.close_request is not None:
                    code, reason = self.close_request
                    self._busy = True  # nothing is sent after the close frame
                    await transport.close(code, reason[:120])
                    return
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            # The peer vanished mid-send; the read loop sees the disconnect.
            logger.debug("send failed: %r", exc)
            self._finished = True

    # -- receiving ------------------------------------------------------------------------

    async def read_loop(self) -> None:
        """Handle frames until the peer leaves or the server closes the connection.

        Where the server offers direct delivery, binary messages reach
        :meth:`handle_message` straight from the socket and this loop only sees the rest
        (text frames, the disconnect); it attaches whenever nothing waits in its queue.
        """
        attach = self._attach_receiver
        while self.close_request is None:
            if attach is not None:
                attach(self._handle_guarded)
            message = await self._transport.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                self.close_soon(CloseCode.BAD_MESSAGE, "text frames are not part of the protocol")
                return
            self._handle_guarded(data)

    def _handle_guarded(self, data: bytes) -> None:
        """:meth:`handle_message`, from either path; a bug closes this connection (1011)."""
        try:
            self.handle_message(data)
        except Exception:  # never the socket's reader, nor the other participants
            logger.exception("handling a message failed")
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")

    def handle_message(self, data: bytes) -> None:
        """Handle one binary message (ignored once the connection is closing)."""
        if self.close_request is not None or self._finished:
            return
        if self.identity.expired():  # before the expiry timer (web/ws.py) has run
            self.close_soon(CloseCode.UNAUTHORIZED, "this invite has expired")
            return
        try:
            kind, content = codec.parse_frame(data)
        except codec.MalformedMessage as exc:
            self.close_soon(CloseCode.BAD_MESSAGE, exc.message)
            return
        room = self.room
        if kind is MessageType.SYNC:
            if content.step is not SyncStep.STEP1 and not self._updates.take():
                self.close_soon(CloseCode.RATE_LIMITED, "too many updates per second")
                return
            room.submit_sync(self, content)
        elif kind is MessageType.AWARENESS:
            if not self._awareness.take():
                self.close_soon(CloseCode.RATE_LIMITED, "too many awareness updates")
                return
            try:
                relay = room.awareness.apply(self, self.identity, content)
            except PresenceRefused as exc:
                self.close_soon(exc.code, exc.reason)
                return
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
