"""HTML pages: the sessions page and the review page."""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>{title}</h1><p>{body}</p></body></html>"""

CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'"


def _page(title: str, body: str) -> Response:
    return HTMLResponse(
        PAGE.format(title=html.escape(title), body=html.escape(body)),
        headers={"Content-Security-Policy": CSP},
    )


async def home(request: Request) -> Response:
    return _page("Proofroom", "Proofroom is running. Open a session's share link to join it.")


async def review(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    return _page(
        "Proofroom review",
        f"Session {session_id}: the browser review room is served here; connect a client to "
        f"/ws/{session_id} with this link's token.",
    )


routes = [Route("/", home), Route("/s/{session_id}", review)]
