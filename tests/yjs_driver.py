"""Drive the official Yjs client (tests/js/yclient.mjs) from Python tests.

    ensure_node_modules()
    async with YjsClient("ws://127.0.0.1:8000/ws", session_id, token) as c:
        await c.wait_event("synced", timeout=10)
        await c.call(op="add_pin", pin_id="p1", pin={...})
        state = (await c.call(op="state"))["state"]

The client prints JSON events on stdout; every event is kept in ``c.events`` (in order) for
assertions. Commands are JSON lines on stdin, answered by an ``{"event": "result", "id": N}``.
Stdlib + asyncio only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"
CLIENT = JS_DIR / "yclient.mjs"


class YjsClientError(RuntimeError):
    pass


def ensure_node_modules() -> None:
    """Install tests/js/node_modules from the lock file if it is missing."""
    if (JS_DIR / "node_modules" / "y-websocket").is_dir():
        return
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise YjsClientError(
            "node and npm are needed for the Yjs interop tests (Node >= 18); "
            f"found node={node!r} npm={npm!r}"
        )
    # --omit=optional: y-websocket 2.x lists y-leveldb/leveldown (its server's persistence,
    # with a native install script) as optional; the client needs none of it.
    proc = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--omit=optional"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise YjsClientError(f"npm ci failed in {JS_DIR}:\n{proc.stdout}\n{proc.stderr}")


class YjsClient:
    """One `node yclient.mjs` process: a y-websocket WebsocketProvider on one room."""

    def __init__(
        self,
        url: str,
        room: str,
        token: str | None = None,
        *,
        reconnect: bool = True,
        trace: bool = False,
    ) -> None:
        self.argv = ["node", str(CLIENT), "--url", url, "--room", room]
        if token is not None:
            self.argv += ["--token", token]
        if not reconnect:
            self.argv.append("--no-reconnect")
        if trace:
            self.argv.append("--trace")
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._proc: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> YjsClient:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=JS_DIR,
        )
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                ev = {"event": "garbage", "line": raw.decode(errors="replace")}
            self.events.append(ev)
            fut = self._pending.pop(ev.get("id"), None) if ev.get("event") == "result" else None
            if fut is not None and not fut.done():
                fut.set_result(ev)
            async with self._changed:
                self._changed.notify_all()
        # EOF: the process is gone; fail whoever still waits.
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(YjsClientError(f"yclient exited; stderr:\n{self.stderr!r}"))
        self._pending.clear()
        async with self._changed:
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        async for raw in self._proc.stderr:
            self.stderr += raw

    @property
    def exited(self) -> bool:
        return (
            self._proc is None
            or self._proc.returncode is not None
            or (bool(self._tasks) and self._tasks[0].done())
        )

    async def call(self, op: str, *, reply_timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """Send one command and return its result event; raises if it answered an error.

        `fields` go to the client as they are (a `wait` takes its own `timeout` in seconds).
        """
        assert self._proc is not None and self._proc.stdin is not None
        if self.exited:
            raise YjsClientError(f"yclient has exited; stderr:\n{self.stderr!r}")
        cmd_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cmd_id] = fut
        self._proc.stdin.write(json.dumps({"id": cmd_id, "op": op, **fields}).encode() + b"\n")
        await self._proc.stdin.drain()
        # A `wait` command has its own timeout inside the client; allow for it.
        try:
            result = await asyncio.wait_for(fut, reply_timeout + float(fields.get("timeout", 0)))
        finally:
            self._pending.pop(cmd_id, None)
        if "error" in result:
            raise YjsClientError(f"{op}: {result['error']}")
        return result

    # `timeout=` is the API the tests use (ASYNC109 prefers asyncio.timeout at the call site).
    async def wait_event(
        self,
        name: str,
        timeout: float = 10,
        **match: Any,
    ) -> dict[str, Any]:
        """Return the first event called `name` (with the given fields), seen or still to come."""

        def find() -> dict[str, Any] | None:
            for ev in self.events:
                if ev.get("event") == name and all(ev.get(k) == v for k, v in match.items()):
                    return ev
            return None

        async def wait() -> dict[str, Any]:
            async with self._changed:
                while (ev := find()) is None:
                    if self._tasks and self._tasks[0].done():
                        raise YjsClientError(
                            f"yclient exited before event {name!r}; events={self.events} "
                            f"stderr={self.stderr!r}"
                        )
                    await self._changed.wait()
                return ev

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise YjsClientError(
                f"no event {name!r} {match} within {timeout}s; events={self.events} "
                f"stderr={self.stderr!r}"
            ) from None

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [ev for ev in self.events if ev.get("event") == name]

    async def close(self) -> None:
        """Ask the client to leave cleanly, then make sure the process is gone."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and not self.exited:
            with contextlib.suppress(Exception):
                await self.call("close", reply_timeout=3)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                try:
                    await asyncio.wait_for(proc.wait(), 2)
                except TimeoutError:
                    proc.kill()
        await proc.wait()
        # Close stdin so no transport is left to be garbage-collected with a warning.
        if proc.stdin is not None:
            proc.stdin.close()
            with contextlib.suppress(Exception):
                await proc.stdin.wait_closed()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await task
