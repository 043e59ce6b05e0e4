"""The uvicorn side of the fast paths in :mod:`.fanout`: a subclass of its private protocol.

Imported only by :func:`.fanout.fanout_protocol`, after it checked the uvicorn release, so
that a uvicorn that moved or changed these internals costs the fast paths, not the server.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

from .fanout import RECEIVE_DIRECT, SEND_FRAME, Receiver, binary_frame

logger = logging.getLogger(__name__)


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
