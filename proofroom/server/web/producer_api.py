"""The producer's view over HTTP (admin only), and the webhook outbox for inspection."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...shared.errors import BadRequest, Forbidden
from ..identity import Identity
from ..review.producer_view import ProducerQuery
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
    body = await svc.producer_view.sessions(query)
    body["rebuilding"] = svc.producer.rebuilding
    return JSONResponse(body)


async def producer_session(request: Request) -> Response:
    await _admin(request)
    view = services(request).producer_view
    return JSONResponse(await view.session(request.path_params["session_id"]))


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
    Route("/api/webhooks/deliveries", webhook_deliveries),
]
