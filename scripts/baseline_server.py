"""A plain websocket broadcast server: the baseline for ``scripts/bench_sync.py``.

Same stack as ``proofroom serve`` (Starlette + uvicorn with its ``websockets-sansio``
implementation, per-message deflate off) but no CRDT,
no persistence and no auth. Route ``/ws/{room}``: every binary frame a client sends is
forwarded unchanged to every other client in the same room.

One concession to the y-websocket protocol, so that the same load client runs against both
servers: a client's sync step 1 (frame ``0, 0, ...``) is answered with an empty sync step 2
and not forwarded. The baseline keeps no document, so it cannot hand a late joiner anything.

    python scripts/baseline_server.py --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import argparse
import logging
from collections import defaultdict

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

logger = logging.getLogger("baseline_server")

#: y-websocket frame prefix of a sync step 1 message (message 0 = sync, sub-type 0 = step 1).
SYNC_STEP1_PREFIX = b"\x00\x00"
#: Sync step 2 carrying an empty Yjs update (two zero var-uints: no structs, no deletes).
EMPTY_SYNC_STEP2 = b"\x00\x01\x02\x00\x00"


class Rooms:
    """Which websockets are in which room."""

    def __init__(self) -> None:
        self._members: dict[str, set[WebSocket]] = defaultdict(set)

    def join(self, room: str, ws: WebSocket) -> None:
        """Add ``ws`` to ``room``."""
        self._members[room].add(ws)

    def leave(self, room: str, ws: WebSocket) -> None:
        """Remove ``ws`` from ``room``; forget the room once it is empty."""
        members = self._members.get(room)
        if members is None:
            return
        members.discard(ws)
        if not members:
            del self._members[room]

    def others(self, room: str, ws: WebSocket) -> list[WebSocket]:
        """Everyone in ``room`` but ``ws`` (a copy: the set may change while we send)."""
        return [peer for peer in self._members.get(room, ()) if peer is not ws]

    def count(self) -> int:
        """Number of connected websockets."""
        return sum(len(members) for members in self._members.values())


async def forward(peers: list[WebSocket], data: bytes) -> None:
    """Send ``data`` to each peer in turn; a peer that has gone away is skipped."""
    for peer in peers:
        try:
            await peer.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The peer's own handler notices the disconnect and leaves the room.
            continue


def create_app() -> Starlette:
    """The broadcast app: ``/ws/{room}`` plus ``/healthz`` and a tiny ``/metrics``."""
    rooms = Rooms()

    async def room_socket(ws: WebSocket) -> None:
        room = ws.path_params["room"]
        await ws.accept()
        rooms.join(room, ws)
        try:
            while True:
                data = await ws.receive_bytes()
                if data.startswith(SYNC_STEP1_PREFIX):
                    await ws.send_bytes(EMPTY_SYNC_STEP2)
                    continue
                await forward(rooms.others(room, ws), data)
        except WebSocketDisconnect:
            pass
        finally:
            rooms.leave(room, ws)

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"baseline_connections {rooms.count()}\n")

    return Starlette(
        routes=[
            WebSocketRoute("/ws/{room}", room_socket),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ]
    )


def main() -> None:
    """Parse the CLI and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--ws",
        default="websockets-sansio",
        help="uvicorn websocket implementation; keep it the same as proofroom serve's",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        ws=args.ws,
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
