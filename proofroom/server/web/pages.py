"""HTML pages (the producer's dashboard and the review room) and the browser bundle.

The pages are Jinja2 templates that load the esbuild bundle of ``proofroom/client/web``
(built by ``scripts/build_web.py``, never committed). They carry no inline script and no
user data: the bundle reads the token from the URL and everything else from the API, so a
strict Content-Security-Policy holds. Without a bundle the server still runs and the pages
say how to build it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: Where scripts/build_web.py writes the bundle (found by path: the server never imports
#: the client package).
BUNDLE_DIR = Path(__file__).resolve().parents[2] / "client" / "web" / "dist"
BUNDLE_FILES = ("review.js", "producer.js", "styles.css")
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
NOT_BUILT = "the browser client is not built: run scripts/build_web.py (needs Node.js and npm)"


def bundle_version() -> str | None:
    """A version of the built bundle for cache busting (None if it is not built)."""
    try:
        return str(max((BUNDLE_DIR / name).stat().st_mtime_ns for name in BUNDLE_FILES))
    except OSError:
        return None


def check_bundle() -> None:
    """Say at start-up, once, when the pages cannot work yet."""
    if bundle_version() is None:
        logger.warning("%s (looked in %s)", NOT_BUILT, BUNDLE_DIR)


def security_headers(request: Request) -> dict[str, str]:
    """A strict CSP (no inline script or style, same-origin everything) and friends."""
    host = request.headers.get("host", "")
    sockets = f" ws://{host} wss://{host}" if _HOST.match(host) else ""
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            # A clip revision plays from a blob: URL (seekable whatever the server's ranges).
            "media-src 'self' blob:",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        # Share links carry their token in the URL: never send it to another site.
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _render(request: Request, template: str, script: str, **context: str) -> Response:
    version = bundle_version()
    html = TEMPLATES.get_template(template).render(
        built=version is not None, version=version, script=script, **context
    )
    return HTMLResponse(html, headers=security_headers(request))


async def home(request: Request) -> Response:
    return _render(request, "producer.html", "producer.js")


async def review(request: Request) -> Response:
    return _render(
        request, "review.html", "review.js", session_id=request.path_params["session_id"]
    )


class BundleFiles:
    """The built bundle under /static; versioned URLs (``?v=``) are cached for good."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = StaticFiles(directory=directory, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.directory.is_dir():
            body = {"error": {"code": "not_built", "message": NOT_BUILT}}
            await JSONResponse(body, status_code=404)(scope, receive, send)
            return
        versioned = b"v=" in scope.get("query_string", b"")
        cache = b"public, max-age=31536000, immutable" if versioned else b"no-cache"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"cache-control"]
                headers += [(b"cache-control", cache), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)

        await self.files(scope, receive, send_with_headers)


routes = [
    Route("/", home),
    Route("/s/{session_id}", review),
    Mount("/static", app=BundleFiles(BUNDLE_DIR), name="static"),
]
