"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

from .services import Services, open_services
from .settings import Settings
from .web import api, events_api, pages, producer_api, review_api, ws
from .web.errors import HANDLERS
from .web.fanout import websocket_protocol

if TYPE_CHECKING:
    import uvicorn


def create_app(settings: Settings, on_ready: Callable[[Services], None] | None = None) -> Starlette:
    """An app whose services start with its lifespan; ``on_ready`` runs once they are up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        pages.check_bundle()
        async with open_services(settings) as services:
            app.state.services = services
            if on_ready is not None:
                on_ready(services)
            # Set when the server starts shutting down (see _draining_http_protocol).
            yield {events_api.DRAINING: asyncio.Event()}

    return Starlette(
        routes=[
            *api.routes,
            *review_api.routes,
            *producer_api.routes,
            *events_api.routes,
            *ws.routes,
            *pages.routes,
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration the server runs under (CLI, tests and benchmarks alike)."""
    import uvicorn

    return uvicorn.Config(
        app,
        # uvicorn's websockets-sansio protocol, with the fast paths on plus one synchronous
        # send of a frame prepared once for all of a room's participants and direct
        # receiving (see web/fanout.py); with them off, uvicorn's own.
        ws=websocket_protocol(settings.fast_paths_on),
        ws_max_size=settings.max_frame_bytes,
        # Compression would cost ~64 KiB of zlib state per connection and CPU per frame;
        # CRDT updates are small and mostly binary.
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=_draining_http_protocol(),
    )


def _draining_http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol, telling the app when shutdown begins.

    At shutdown uvicorn waits for every open response to finish before the lifespan ends,
    without telling the app: an endless response (the event stream) would hold it forever.
    This sets the lifespan state's draining event first, so such responses end themselves.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DrainingH11Protocol(H11Protocol):
        def shutdown(self) -> None:
            draining = self.app_state.get(events_api.DRAINING)
            if isinstance(draining, asyncio.Event):
                draining.set()
            super().shutdown()

    return DrainingH11Protocol


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn (``port`` 0 picks a free one).

    The protocol must be IPPROTO_TCP: asyncio enables TCP_NODELAY only on such sockets,
    and without it Nagle's algorithm adds ~40 ms to small messages on a busy connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listen now, so connections made as soon as the ready line is printed wait in the
    # backlog instead of being refused while uvicorn finishes starting.
    sock.listen(2048)
    return sock
