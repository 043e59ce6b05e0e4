"""The websocket endpoint: authenticate, join the room, run the connection."""

from __future__ import annotations

import logging

import anyio
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from ...shared.errors import ProofroomError, RoomFull
from ...shared.permissions import Action
from ..rooms.connection import Connection
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
    )
    room.peers.add(conn)
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
        room.peers.discard(conn)
        conn.leave()


routes = [WebSocketRoute("/ws/{session_id}", session_socket)]
