"""Helpers every endpoint uses: the services, the caller's identity, JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import HTTPConnection, Request

from ...shared.errors import BadRequest, PayloadTooLarge
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


async def json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_JSON_BYTES:
        raise PayloadTooLarge("the JSON body is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise PayloadTooLarge("the JSON body is too large")
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def base_url(conn: HTTPConnection) -> str:
    configured = services(conn).settings.public_url
    return (configured or str(conn.base_url)).rstrip("/")
