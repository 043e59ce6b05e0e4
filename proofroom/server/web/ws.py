"""The websocket endpoint: authenticate, join the room, run the connection."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from ...shared.errors import ProofroomError, RoomFull
from ...shared.permissions import Action
from ...shared.protocol import CloseCode
from ..identity import Identity
from ..rooms.connection import Connection
from ..rooms.eager import eager_sends
from .common import identity, services
from .fanout import RECEIVE_DIRECT, SEND_FRAME

logger = logging.getLogger(__name__)


async def session_socket(websocket: WebSocket) -> None:
    # Accept first so that every refusal reaches the client as a close code it can read.
    await websocket.accept()
    svc = services(websocket)
    session_id = websocket.path_params["session_id"]
    try:
        actor = (await identity(websocket)).require(session_id, Action.VIEW)
        await svc.sessions.require(session_id)
        room = await svc.rooms.acquire(session_id)
        if len(room.peers) >= svc.settings.max_connections_per_session:
            raise RoomFull("this session has as many participants as it allows")
    except ProofroomError as exc:
        await websocket.close(exc.close_code, exc.message[:120])
        return
    extensions = websocket.scope.get("extensions") or {}
    conn = Connection(
        websocket,
        actor,
        room,
        svc.limits,
        svc.metrics,
        send_frame=extensions.get(SEND_FRAME),
        attach_receiver=extensions.get(RECEIVE_DIRECT),
        eager=eager_sends(svc.settings.fast_paths_on),
    )
    room.peers.add(conn)
    expiry = close_at_expiry(conn, actor)
    try:
        conn.greet()
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.write_loop)
            try:
                await conn.read_loop()
            finally:
                if conn.close_request is None:
                    conn.finish()
    finally:
        if expiry is not None:
            expiry.cancel()
        room.peers.discard(conn)
        conn.leave()


def close_at_expiry(conn: Connection, actor: Identity) -> asyncio.TimerHandle | None:
    """Close the connection when its invite expires: rights are checked for as long as a
    connection lives, not only when it opens (the connection also refuses any message that
    arrives after the expiry, before this timer has run)."""
    if actor.expires_at is None:
        return None
    loop = asyncio.get_running_loop()
    return loop.call_later(
        max(0.0, actor.expires_at - time.time()),
        conn.close_soon,
        CloseCode.UNAUTHORIZED,
        EXPIRED,
    )


EXPIRED = "this invite has expired"


routes = [WebSocketRoute("/ws/{session_id}", session_socket)]
