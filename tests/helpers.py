"""Test helpers: a real server on a free port, images, sessions with a person per role."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from PIL import Image
from pycrdt import Array, Map

from proofroom.client import ApiClient, SessionClient
from proofroom.client.api import token_from_url
from proofroom.server.app import bind_socket, create_app, uvicorn_config
from proofroom.server.services import Services
from proofroom.server.settings import Settings

ADMIN_TOKEN = "pr_admin_test_token"
ROLES = ("viewer", "commenter", "editor", "approver", "owner")
#: The person who joins each role link of a test session.
PEOPLE = {
    "viewer": "Vera Viewer",
    "commenter": "Cal Commenter",
    "editor": "Eddie Editor",
    "approver": "Abby Approver",
    "owner": "Olga Owner",
}
#: The one server setting the tests take from their environment (test servers, in-process
#: and subprocesses alike): ``off`` runs them on the public-API paths (web/fanout.py).
FAST_PATHS_ENV = "PROOFROOM_FAST_PATHS"


def expected_fast_paths() -> frozenset[str]:
    """The fast paths a test server's connections take under this run's environment."""
    if os.environ.get(FAST_PATHS_ENV) == "off":
        return frozenset()
    return frozenset({"send_frame", "receive_direct", "eager"})


def pin_map(author: str, text: str = "hello", **extra: Any) -> Map[Any]:
    """A new pin as a client writes it: every required field, an empty thread."""
    fields: dict[str, Any] = {
        "x": 5,
        "y": 5,
        "author": author,
        "text": text,
        "status": "open",
        "created_at": 1.0,
        "thread": Array(),
    }
    fields.update(extra)
    return Map(fields)


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
        return await join_session(self.url, created)

    async def join(self, link_token: str, name: str, email: str | None = None) -> dict[str, Any]:
        """A new person through a role link: the server's answer (``token``, ``user_id``)."""
        async with self.api(link_token) as api:
            return await api.join(name, email)


async def join_session(url: str, created: dict[str, Any]) -> ReviewSession:
    """One person per role link of a just-created session (links are doors, not people)."""
    links = {role: token_from_url(link) for role, link in created["links"].items()}
    tokens, users = {}, {}
    for role, link in links.items():
        async with ApiClient(url, link) as api:
            person = await api.join(PEOPLE.get(role, role.title()))
        tokens[role], users[role] = person["token"], person["user_id"]
    return ReviewSession(created["id"], created, tokens, users, links)


@dataclass
class ReviewSession:
    id: str
    created: dict[str, Any]
    #: A personal token per role (the person of PEOPLE who joined that role's link).
    tokens: dict[str, str]
    #: User id of that person per role.
    users: dict[str, str] = field(default_factory=dict)
    #: The role links' own tokens (good only for joining).
    links: dict[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def run_server(data: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    """Start the real app under uvicorn on a free port; stop it (gracefully) on exit."""
    # scripts/test runs the sync tests a second time with the fast paths off.
    overrides.setdefault("fast_paths", os.environ.get(FAST_PATHS_ENV) or "on")
    # The server's default edit engine is fill; tests of everything around the engines run
    # on the classical one (fast, and its provenance names a method). Tests of the engines
    # and of the default choice pass engine= themselves (tests/test_engines_api.py).
    overrides.setdefault("engine", "classical")
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
