"""The fast-path setting: each mode is really in effect, and the adapters degrade, never break.

scripts/test runs the sync tests twice, the second time with ``PROOFROOM_FAST_PATHS=off``;
these tests check that the setting reaches every adapter in both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets

from proofroom.server.app import bind_socket, uvicorn_config
from proofroom.server.rooms import eager
from proofroom.server.settings import Settings
from proofroom.server.web import fanout

from .helpers import (
    FAST_PATHS_ENV,
    RunningServer,
    eventually,
    expected_fast_paths,
    run_server,
)
from .procs import clean_env, proofroom_cmd

ALL_PATHS = frozenset({"send_frame", "receive_direct", "eager"})


async def _scope_probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: accept a websocket and tell the client its scope's extensions."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert scope["type"] == "websocket"
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    extensions = sorted((scope.get("extensions") or {}).keys())
    await send({"type": "websocket.send", "text": json.dumps(extensions)})
    await send({"type": "websocket.close", "code": 1000})


@contextlib.asynccontextmanager
async def _probe_server(settings: Settings) -> AsyncIterator[str]:
    """The probe under the server's own uvicorn configuration, on a free port."""
    server = uvicorn.Server(uvicorn_config(_scope_probe, settings))  # type: ignore[arg-type]
    sock = bind_socket("127.0.0.1", 0)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.mark.parametrize("mode", ["on", "off"])
async def test_the_websocket_scope_has_the_extensions_only_with_fast_paths_on(
    tmp_path: Path, mode: str
) -> None:
    async with (
        _probe_server(Settings(data=tmp_path, fast_paths=mode)) as url,
        websockets.connect(url) as ws,
    ):
        extensions = set(json.loads(await ws.recv()))
    ours = extensions & {fanout.SEND_FRAME, fanout.RECEIVE_DIRECT}
    assert ours == ({fanout.SEND_FRAME, fanout.RECEIVE_DIRECT} if mode == "on" else set())


@pytest.mark.parametrize("mode", ["on", "off"])
async def test_connections_take_the_fast_paths_only_when_they_are_on(
    tmp_path: Path, mode: str
) -> None:
    async with run_server(tmp_path / "data", fast_paths=mode) as server:
        session = await server.new_session()
        async with (
            server.client(session.id, session.tokens["editor"]) as writer,
            server.client(session.id, session.tokens["viewer"]) as reader,
        ):
            writer.add_pin("p", x=1, y=1, text="hello", author=session.users["editor"])
            await reader.wait_for(lambda: "p" in reader.pins)
            assert reader.pins["p"]["text"] == "hello"
            peers = _peers(server, session.id)
            room = server.services.rooms.rooms[session.id]
    assert len(peers) == 2
    assert {conn.fast_paths for conn in peers} == {ALL_PATHS if mode == "on" else frozenset()}
    assert room.guard_native_events is (mode == "on")


async def test_test_servers_follow_the_environment(tmp_path: Path) -> None:
    # What lets scripts/test run the sync tests on the public-API paths.
    async with run_server(tmp_path / "data") as server:
        session = await server.new_session()
        async with server.client(session.id, session.tokens["viewer"]):
            peers = _peers(server, session.id)
    assert [conn.fast_paths for conn in peers] == [expected_fast_paths()]


def _peers(server: RunningServer, session_id: str) -> list[Any]:
    return list(server.services.rooms.rooms[session_id].peers)


def test_a_bad_value_fails_when_the_settings_are_built() -> None:
    with pytest.raises(ValueError, match="must be one of on, off, not 'of'"):
        Settings(fast_paths="of")
    with pytest.raises(ValueError, match="PROOFROOM_FAST_PATHS"):
        Settings.from_env({"PROOFROOM_FAST_PATHS": "fast"})
    assert not Settings.from_env({"PROOFROOM_FAST_PATHS": "off"}).fast_paths_on
    assert Settings().fast_paths_on


def test_serve_refuses_a_bad_value_with_a_message(tmp_path: Path) -> None:
    done = subprocess.run(
        proofroom_cmd("serve", "--port", "0", "--data", str(tmp_path)),
        env=clean_env({FAST_PATHS_ENV: "fsat"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "proofroom: fast_paths (PROOFROOM_FAST_PATHS) must be one of on, off" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_untested_uvicorn_gets_the_plain_protocol(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert fanout.websocket_protocol(False) == fanout.PLAIN_PROTOCOL
    assert fanout.websocket_protocol(True) is not fanout.PLAIN_PROTOCOL
    fanout.fanout_protocol.cache_clear()
    monkeypatch.setattr(uvicorn, "__version__", "9.0.0")
    try:
        with caplog.at_level(logging.WARNING, logger=fanout.__name__):
            assert fanout.websocket_protocol(True) == fanout.PLAIN_PROTOCOL
        assert "uvicorn 9.0.0 is not a tested release" in caplog.text
    finally:
        fanout.fanout_protocol.cache_clear()


def test_an_asyncio_without_the_future_flag_gets_awaited_sends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert eager.eager_sends(True) and not eager.eager_sends(False)
    eager._supported.cache_clear()
    monkeypatch.setattr(eager, "_BLOCKING", "_no_such_flag")
    try:
        with caplog.at_level(logging.WARNING, logger=eager.__name__):
            assert not eager.eager_sends(True)
        assert "asyncio.Future has no _no_such_flag" in caplog.text
    finally:
        eager._supported.cache_clear()


@pytest.mark.parametrize("outcome", ["result", "error"])
async def test_a_suspended_send_is_finished_as_a_task_would(outcome: str) -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def send() -> None:
        try:
            seen.append(await future)
        except KeyError as exc:
            seen.append(f"raised {exc}")

    coro = send()
    waiting_on = coro.send(None)  # what Connection._send_now does: the first step
    assert waiting_on is future
    finishing = asyncio.ensure_future(eager.finish_send(coro, waiting_on))
    await asyncio.sleep(0)
    assert not finishing.done()
    if outcome == "result":
        future.set_result("sent")
    else:
        future.set_exception(KeyError("gone"))
    await finishing
    assert seen == (["sent"] if outcome == "result" else ["raised 'gone'"])
