"""uvicorn's websocket protocol, plus a synchronous send of pre-framed binary messages.

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

SendFrame = Callable[[bytes], bool]

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
    """uvicorn's sans-I/O websocket protocol with the :data:`SEND_FRAME` extension."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_FRAME] = self.send_frame

    def send_frame(self, message: bytes) -> bool:
        """Write ``message`` as one binary frame now; False where the ASGI path must send."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.state is not State.OPEN
            or self.conn.extensions
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(binary_frame(message))
        return True
