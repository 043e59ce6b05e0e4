"""uvicorn's websocket protocol, plus two fast paths the rooms use: direct send and receive.

A room sends each change to every other participant: the same bytes, many times. Through
ASGI every copy is its own ``await websocket.send_bytes()``, and each walks Starlette's
state checks, the exception middleware's wrapper, uvicorn's send and the websockets
library's framing before it reaches the socket; that walk cost more server CPU than the
CRDT work itself (sync benchmark). Server-to-client frames are not masked, so one frame
serves every recipient: this protocol offers the ASGI scope extension
:data:`SEND_FRAME`, a plain function that frames a message once (a one-entry cache keyed
by the message object) and writes it to the transport, and that declines (returns False)
whenever the ordinary path must be taken instead: before the handshake, once closing, when
the transport pushes back, or with a websocket extension (compression) negotiated.

Receiving has the mirror-image cost: uvicorn queues each incoming message for the
application's ``receive()``, pauses reading the socket until the application takes it,
then wakes the application's task, which resumes reading; two selector changes and a task
switch per message, and the message waits one more event-loop turn. The extension
:data:`RECEIVE_DIRECT` lets an application attach a plain function instead: from then on,
complete binary messages go to it straight from ``data_received``, in order, and only
everything else (text, disconnects) still goes through ``receive()``; a message that has to
queue detaches the receiver, so nothing overtakes it. A slow handler slows
the socket's reads, so the back-pressure on a client is kept.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

logger = logging.getLogger(__name__)

#: ASGI scope extension: ``send_frame(message: bytes) -> bool`` (True once written).
SEND_FRAME = "proofroom.send_frame"
#: ASGI scope extension: ``attach(receiver: Callable[[bytes], None]) -> bool``. True once
#: binary messages go to ``receiver``; False while messages wait in ``receive()`` (take
#: them first, then attach again) or the connection is not open.
RECEIVE_DIRECT = "proofroom.receive_direct"

Receiver = Callable[[bytes], None]

_OP_BINARY_FIN = 0x82

# The last message framed and its frame: a room sends the same bytes object to each peer
# in turn, so it is framed once. Holding the message keeps its id from being reused.
_last: tuple[bytes, bytes] = (b"", b"\x82\x00")


def binary_frame(message: bytes) -> bytes:
    """``message`` as one unmasked, final binary websocket frame (RFC 6455 section 5.2)."""
    global _last
    if _last[0] is message:
        return _last[1]
    size = len(message)
    if size < 126:
        header = bytes((_OP_BINARY_FIN, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", _OP_BINARY_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", _OP_BINARY_FIN, 127, size)
    frame = header + message
    _last = (message, frame)
    return frame


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websocket protocol with :data:`SEND_FRAME` and :data:`RECEIVE_DIRECT`."""

    _receiver: Receiver | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_FRAME] = self.send_frame
            scope["extensions"][RECEIVE_DIRECT] = self.attach_receiver

    def _open(self) -> bool:
        """Handshake done, and neither side has closed."""
        return self.handshake_complete and not self.close_sent and not self.disconnected

    def send_frame(self, message: bytes) -> bool:
        """Write ``message`` as one binary frame now; False where the ASGI path must send."""
        if (
            not self._open()
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(binary_frame(message))
        return True

    def attach_receiver(self, receiver: Receiver) -> bool:
        """Hand later binary messages to ``receiver``; False while any wait in the queue."""
        if not self._open() or not self.queue.empty():
            return False
        self._receiver = receiver
        if self.read_paused:  # nothing waits for the application any more
            self.read_paused = False
            self.transport.resume_reading()
        return True

    def send_receive_event_to_app(self) -> None:
        receiver = self._receiver
        if receiver is None or self.close_sent or self.curr_msg_data_type != "bytes":
            # Whatever follows a queued message queues behind it, so the order holds.
            self._receiver = None
            super().send_receive_event_to_app()
            return
        frames, self.frames = self.frames, []
        try:
            receiver(frames[0] if len(frames) == 1 else b"".join(frames))
        except Exception:
            # The receiver handles its own errors; this one escaped it. Drop the connection
            # (the application sees the disconnect) rather than fail inside the transport.
            logger.exception("a websocket receiver failed; closing its connection")
            self._receiver = None
            self.transport.close()
