"""Test helpers: a real server on a free port, images, sessions with a token per role."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from PIL import Image

from proofroom.client import ApiClient, SessionClient
from proofroom.client.api import token_from_url
from proofroom.server.app import bind_socket, create_app, uvicorn_config
from proofroom.server.services import Services
from proofroom.server.settings import Settings

ADMIN_TOKEN = "pr_admin_test_token"
ROLES = ("viewer", "commenter", "editor", "approver", "owner")


def png_bytes(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG"
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format=fmt)
    return out.getvalue()


def encode_png(pixels: np.ndarray) -> bytes:
    """An array (HxW, HxWx3 or HxWx4 uint8) as PNG bytes."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes, mode: str = "RGB") -> np.ndarray:
    """Image bytes as an array in ``mode``."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert(mode))


@dataclass
class RunningServer:
    """A Proofroom server running in this event loop on a free loopback port."""

    url: str
    settings: Settings
    services: Services
    admin: ApiClient

    def api(self, token: str | None) -> ApiClient:
        return ApiClient(self.url, token)

    def client(self, session_id: str, token: str, **kwargs: Any) -> SessionClient:
        return SessionClient(self.url, session_id, token, **kwargs)

    async def new_session(
        self, *, title: str = "Test review", width: int = 64, height: int = 48
    ) -> ReviewSession:
        created = await self.admin.create_session(png_bytes(width, height), title=title)
        tokens = {role: token_from_url(url) for role, url in created["links"].items()}
        users = {}
        for role, token in tokens.items():
            async with self.api(token) as api:
                users[role] = (await api.whoami())["user_id"]
        return ReviewSession(created["id"], created, tokens, users)


@dataclass
class ReviewSession:
    id: str
    created: dict[str, Any]
    #: Share-link token per role.
    tokens: dict[str, str]
    #: User id per role.
    users: dict[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def run_server(data: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    """Start the real app under uvicorn on a free port; stop it (gracefully) on exit."""
    settings = Settings(data=data, admin_token=ADMIN_TOKEN, **overrides)
    ready: asyncio.Future[Services] = asyncio.get_running_loop().create_future()
    app = create_app(settings, on_ready=ready.set_result)
    server = uvicorn.Server(uvicorn_config(app, settings))
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        services = await asyncio.wait_for(asyncio.shield(ready), 30)
        url = f"http://127.0.0.1:{port}"
        async with ApiClient(url, ADMIN_TOKEN) as admin:
            yield RunningServer(url, settings, services, admin)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    """Poll a condition on server-side state (no message tells a client it happened)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)
