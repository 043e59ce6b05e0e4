"""Helpers every endpoint uses: the services, the caller's identity, JSON bodies."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from starlette.requests import HTTPConnection, Request

from ...shared.errors import PayloadTooLarge
from ..bodies import parse_json_object
from ..identity import Identity
from ..services import Services

MAX_JSON_BYTES = 1024 * 1024


def services(conn: HTTPConnection) -> Services:
    svc: Services = conn.app.state.services
    return svc


def token_of(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return conn.query_params.get("token")


async def identity(conn: HTTPConnection) -> Identity:
    return await services(conn).auth.resolve(token_of(conn))


async def json_body(request: Request, allowed: Collection[str] | None) -> dict[str, Any]:
    """The request's JSON object, size- and depth-limited; 400/413 when it is not one.

    ``allowed`` names the top-level fields the endpoint understands (anything else is a 400
    ``unknown_field``); None only where the service below checks the keys itself.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"the JSON body is too large (at most {MAX_JSON_BYTES} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"the JSON body is too large (at most {MAX_JSON_BYTES} bytes)")
    return parse_json_object(bytes(body), allowed)


def base_url(conn: HTTPConnection) -> str:
    configured = services(conn).settings.public_url
    return (configured or str(conn.base_url)).rstrip("/")
