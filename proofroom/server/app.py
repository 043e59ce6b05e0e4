"""The ASGI application: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette

from .services import Services, open_services
from .settings import Settings
from .web import api, pages, ws
from .web.errors import HANDLERS


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
