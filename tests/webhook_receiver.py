"""A real HTTP endpoint for webhook tests: answers each path as the test tells it to.

Plain asyncio (HTTP/1.1 with keep-alive), so a test controls every answer: a status code,
or ``HANG`` (read the request, never answer) until the receiver closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

HANG = "hang"
Step = int | str


@dataclass(frozen=True)
class Received:
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def delivery(self) -> str:
        return self.headers["x-proofroom-delivery"]


class Receiver:
    """``async with Receiver() as rx``: ``rx.url("/a")``, ``rx.plan("/a", 500, 200)``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        #: What the next requests to a path get, in order; then ``default``.
        self.plans: dict[str, list[Step]] = {}
        #: Status for a path once its plan is used up (200 if not set).
        self.default: dict[str, Step] = {}
        self._server: asyncio.Server | None = None
        self._changed = asyncio.Condition()
        self._closing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing.set()
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *steps: Step) -> None:
        self.plans.setdefault(path, []).extend(steps)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 30) -> None:
        """Until ``predicate()`` holds, re-checked after every request received."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while not self._closing.is_set():
                request = await self._read(reader)
                if request is None:
                    return
                plan = self.plans.get(request.path)
                step = plan.pop(0) if plan else self.default.get(request.path, 200)
                async with self._changed:
                    self.requests.append(request)
                    self._changed.notify_all()
                if step == HANG:
                    await self._closing.wait()
                    return
                writer.write(
                    f"HTTP/1.1 {step} Answer\r\nContent-Length: 2\r\n\r\nok".encode("ascii")
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Received | None:
        line = await reader.readline()
        if not line:
            return None
        _method, path, _version = line.decode("ascii").split(" ", 2)
        headers: dict[str, str] = {}
        while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return Received(path, headers, body)
