"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from .services import Services, open_services
from .settings import Settings
from .web import api, pages, ws
from .web.errors import HANDLERS

if TYPE_CHECKING:
    import uvicorn


def create_app(settings: Settings, on_ready: Callable[[Services], None] | None = None) -> Starlette:
    """An app whose services start with its lifespan; ``on_ready`` runs once they are up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            if on_ready is not None:
                on_ready(services)
            yield

    return Starlette(
        routes=[*api.routes, *ws.routes, *pages.routes],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    """The uvicorn configuration the server runs under (CLI, tests and benchmarks alike)."""
    import uvicorn

    return uvicorn.Config(
        app,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        # Compression would cost ~64 KiB of zlib state per connection and CPU per frame;
        # CRDT updates are small and mostly binary.
        ws_per_message_deflate=False,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
