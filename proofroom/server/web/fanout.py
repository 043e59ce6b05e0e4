"""Two fast paths the rooms use, direct send and receive, and the adapter that picks them.

A room sends each change to every other participant: the same bytes, many times. Through
ASGI every copy is its own ``await websocket.send_bytes()``, and each walks Starlette's
state checks, the exception middleware's wrapper, uvicorn's send and the websockets
library's framing before it reaches the socket; that walk cost more server CPU than the
CRDT work itself (sync benchmark). Server-to-client frames are not masked, so one frame
serves every recipient: the fanout protocol (``web/fanout_protocol.py``) offers the ASGI
scope extension :data:`SEND_FRAME`, a plain function that frames a message once (a
one-entry cache keyed by the message object) and writes it to the transport, and that
declines (returns False) whenever the ordinary path must be taken instead: before the
handshake, once closing, when the transport pushes back, or with a websocket extension
(compression) negotiated.

Receiving has the mirror-image cost: uvicorn queues each incoming message for the
application's ``receive()``, pauses reading the socket until the application takes it,
then wakes the application's task, which resumes reading; two selector changes and a task
switch per message, and the message waits one more event-loop turn. The extension
:data:`RECEIVE_DIRECT` lets an application attach a plain function instead: from then on,
complete binary messages go to it straight from ``data_received``, in order, and only
everything else (text, disconnects) still goes through ``receive()``; a message that has to
queue detaches the receiver, so nothing overtakes it. A slow handler slows
the socket's reads, so the back-pressure on a client is kept.

Both extend uvicorn's private protocol internals, so this module is an adapter with a plain
path beside it: :func:`websocket_protocol` picks the fanout protocol only when the fast paths are
on (``PROOFROOM_FAST_PATHS``) and the installed uvicorn is one it was tested against;
otherwise uvicorn runs its own ``websockets-sansio`` protocol, the scope carries neither
extension, and the rooms fall back to ASGI ``send``/``receive``: slower, same behaviour.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: ASGI scope extension: ``send_frame(message: bytes) -> bool`` (True once written).
SEND_FRAME = "proofroom.send_frame"
#: ASGI scope extension: ``attach(receiver: Callable[[bytes], None]) -> bool``. True once
#: binary messages go to ``receiver``; False while messages wait in ``receive()`` (take
#: them first, then attach again) or the connection is not open.
RECEIVE_DIRECT = "proofroom.receive_direct"

Receiver = Callable[[bytes], None]

#: uvicorn's own protocol, the public-API path (the same sans-I/O protocol, unextended).
PLAIN_PROTOCOL = "websockets-sansio"
#: The uvicorn release series whose internals the fast paths were checked against
#: (tests/test_receiving.py, test_backpressure.py, test_fast_paths.py).
TESTED_UVICORN = ("0.54.",)

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


def websocket_protocol(fast_paths: bool) -> type[asyncio.Protocol] | str:
    """The ``ws`` protocol for uvicorn's config: the fanout one, or uvicorn's plain one."""
    if not fast_paths:
        return PLAIN_PROTOCOL
    protocol, reason = fanout_protocol()
    if protocol is None:
        # An upgrade may cost speed, never correctness: say so once, at start.
        logger.warning("websocket fast paths off: %s", reason)
        return PLAIN_PROTOCOL
    return protocol


@functools.cache
def fanout_protocol() -> tuple[type[asyncio.Protocol] | None, str]:
    """:class:`FanoutWebSocketProtocol` where this uvicorn supports it, else (None, why)."""
    import uvicorn

    version = getattr(uvicorn, "__version__", "?")
    if not version.startswith(TESTED_UVICORN):
        return None, f"uvicorn {version} is not a tested release ({', '.join(TESTED_UVICORN)}x)"
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )

        from .fanout_protocol import FanoutWebSocketProtocol
    except ImportError as exc:
        return None, f"uvicorn's sans-I/O websocket protocol is missing ({exc})"
    for name in ("handle_connect", "send_receive_event_to_app", "send"):
        if not callable(getattr(WebSocketsSansIOProtocol, name, None)):
            return None, f"uvicorn's websocket protocol has no {name}()"
    return FanoutWebSocketProtocol, ""
