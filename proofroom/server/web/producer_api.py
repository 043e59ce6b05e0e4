"""The producer's view over HTTP (admin only), and the webhook outbox for inspection."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...shared.errors import BadRequest, Forbidden
from ...shared.permissions import Action
from ..identity import Identity
from ..review.producer_view import ProducerQuery
from ..review.replay import session_history
from .common import identity, services


async def _admin(request: Request) -> Identity:
    actor = await identity(request)
    if not actor.is_admin:
        raise Forbidden("the producer's view needs the workspace admin token")
    return actor


async def producer_sessions(request: Request) -> Response:
    await _admin(request)
    svc = services(request)
    query = ProducerQuery.parse(request.query_params)
    # A dashboard reloads on a review event: show it what that event changed.
    await svc.producer.flush()
    body = await svc.producer_view.sessions(query)
    body["rebuilding"] = svc.producer.rebuilding
    return JSONResponse(body)


async def producer_session(request: Request) -> Response:
    await _admin(request)
    svc = services(request)
    await svc.producer.flush()
    return JSONResponse(await svc.producer_view.session(request.path_params["session_id"]))


async def replay(request: Request) -> Response:
    """A session's history as ordered events (owners and the admin; see review/replay.py)."""
    session_id = request.path_params["session_id"]
    (await identity(request)).require(session_id, Action.ADMINISTER)
    svc = services(request)
    session = await svc.sessions.require(session_id)
    body = await session_history(svc.db, svc.records, session)
    headers = {}
    if request.query_params.get("download"):
        name = f"proofroom-{session_id}-events.json"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return JSONResponse(body, headers=headers)


async def webhook_deliveries(request: Request) -> Response:
    await _admin(request)
    status = request.query_params.get("status") or None
    if status not in (None, "pending", "delivered", "failed"):
        raise BadRequest("status must be pending, delivered or failed")
    rows = await services(request).webhooks.deliveries(status)
    return JSONResponse({"deliveries": rows})


routes = [
    Route("/api/producer", producer_sessions),
    Route("/api/producer/sessions/{session_id}", producer_session),
    Route("/api/sessions/{session_id}/replay", replay),
    Route("/api/webhooks/deliveries", webhook_deliveries),
]
