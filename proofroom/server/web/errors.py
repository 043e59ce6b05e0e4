"""One place that renders errors: JSON ``{error: {code, message}}``, never a stack trace."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...shared.errors import ProofroomError

logger = logging.getLogger(__name__)


async def proofroom_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProofroomError)
    return JSONResponse(exc.to_json(), status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"code": "internal", "message": "internal server error"}}, status_code=500
    )


HANDLERS = {
    ProofroomError: proofroom_error,
    HTTPException: http_error,
    Exception: internal_error,
}
