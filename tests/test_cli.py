"""The ``proofroom`` command line, run as real subprocesses against a real server."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import psutil
import pytest

from .helpers import ADMIN_TOKEN, ROLES, png_bytes
from .procs import READY, ServerProcess, clean_env, proofroom_cmd

CLI_TIMEOUT = 60


def cli(
    *args: str, env: Mapping[str, str | None] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m proofroom ARGS`` with no PROOFROOM_* variable but those in ``env``."""
    return subprocess.run(
        proofroom_cmd(*args),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=clean_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str]) -> str:
    """A failed command: non-zero, one line on stderr, no traceback; returns that line."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("proofroom: "), lines[0]
    return lines[0]


def whoami(base_url: str, token: str) -> dict[str, object]:
    response = httpx.get(
        f"{base_url}/api/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``proofroom serve`` for the client-command tests of this module."""
    with ServerProcess(tmp_path_factory.mktemp("cli") / "data") as srv:
        srv.start()
        yield srv


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(64, 48))
    return path


# -- serve -----------------------------------------------------------------------------------


def test_serve_prints_the_url_with_the_admin_token_and_answers_healthz(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServerProcess(data, admin_token="pr_admin_from_env") as srv:
        srv.start()
        assert READY.match(srv.ready_line)
        assert srv.token == "pr_admin_from_env"
        assert srv.port > 0
        data_line = srv.wait_for_line(r"^Data: ")
        assert str(data.resolve()) in data_line
        # The start line says where the token came from: the environment, here.
        assert "admin token: from PROOFROOM_ADMIN_TOKEN" in data_line, data_line
        assert httpx.get(f"{srv.url}/healthz", timeout=10).status_code == 200
        # The printed URL carries a token that works.
        response = httpx.get(f"{srv.url}/api/sessions", params={"token": srv.token}, timeout=10)
        assert response.status_code == 200, response.text
        # A token was given: none is written to the data dir.
        assert not (data / "admin_token").exists()
        assert srv.terminate() in (0, -15)


def _full_pipe() -> tuple[int, int, int]:
    """A pipe whose buffer is already full: (read fd, write fd, bytes of filler in it)."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    filled = 0
    for chunk in (b"x" * 4096, b"x"):
        while True:
            try:
                filled += os.write(write_fd, chunk)
            except BlockingIOError:
                break
    os.set_blocking(write_fd, True)
    return read_fd, write_fd, filled


def test_the_printed_url_answers_as_soon_as_it_is_printed(tmp_path: Path) -> None:
    """Whoever waits for the ready line (scripts, tests, supervisors) may connect at once.

    Deterministic: the server's stdout is a pipe that is already full, so printing the ready
    line blocks the server until this test drains it. A server that prints only once it is
    listening reaches LISTEN while blocked; one that prints first never does.
    """
    read_fd, write_fd, filler = _full_pipe()
    proc = None
    try:
        with (tmp_path / "stderr.log").open("w") as err:
            proc = subprocess.Popen(
                proofroom_cmd("serve", "--port", "0", "--data", str(tmp_path / "data")),
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=err,
                env=clean_env({"PROOFROOM_ADMIN_TOKEN": ADMIN_TOKEN}),
            )
        os.close(write_fd)
        write_fd = -1
        server = psutil.Process(proc.pid)

        def listening() -> bool:
            return any(c.status == psutil.CONN_LISTEN for c in server.net_connections("tcp"))

        deadline = time.monotonic() + 10
        while not listening() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        is_listening = listening() if proc.poll() is None else False

        # Drain the pipe: the filler, then the ready line.
        output = b""
        deadline = time.monotonic() + 30
        while b"\n" not in output[filler:]:
            assert time.monotonic() < deadline, output[filler:]
            ready, _, _ = select.select([read_fd], [], [], 1)
            if ready:
                chunk = os.read(read_fd, 65536)
                assert chunk, f"the server exited: {(tmp_path / 'stderr.log').read_text()}"
                output += chunk
        line = output[filler:].split(b"\n", 1)[0].decode()
        match = READY.match(line)
        assert match, line
        assert is_listening, (
            "'Proofroom is running at ...' was printed before the server listened on its port"
        )
        socket.create_connection(("127.0.0.1", int(match[2])), timeout=5).close()
        assert httpx.get(f"{match[1]}/healthz", timeout=10).status_code == 200
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=15)
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_serve_without_a_token_generates_one_and_keeps_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServerProcess(data, admin_token=None) as first:
        first.start()
        token = first.token
        assert re.fullmatch(r"pr_admin_[A-Za-z0-9_-]{16,}", token), token
        path = data / "admin_token"
        assert path.read_text().strip() == token
        # Generated into the data dir, and the start line says so (not the environment).
        data_line = first.wait_for_line(r"^Data: ")
        assert f"admin token: kept in {path.resolve()}" in data_line, data_line
        assert "from PROOFROOM_ADMIN_TOKEN" not in data_line, data_line
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert httpx.get(f"{first.url}/healthz", timeout=10).status_code == 200
        ok = httpx.get(
            f"{first.url}/api/sessions", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert ok.status_code == 200
        bad = httpx.get(
            f"{first.url}/api/sessions", headers={"Authorization": "Bearer nope"}, timeout=10
        )
        assert bad.status_code == 401
        # Client commands find the token in the data dir on their own.
        listed = cli("session", "list", "--server", first.url, "--data", str(data))
        assert listed.returncode == 0, listed.stderr
        assert first.terminate() in (0, -15)
    with ServerProcess(data, admin_token=None) as second:
        second.start()
        assert second.token == token
        assert stat.S_IMODE((data / "admin_token").stat().st_mode) == 0o600


def test_serve_reads_its_settings_from_the_environment(tmp_path: Path) -> None:
    """PROOFROOM_* mirrors the flags: here the data directory comes from PROOFROOM_DATA."""
    data = tmp_path / "from-env"
    with ServerProcess(None, admin_token=None, env={"PROOFROOM_DATA": str(data)}) as srv:
        srv.start()
        assert (data / "admin_token").read_text().strip() == srv.token
        assert str(data.resolve()) in srv.wait_for_line(r"^Data: ")


# -- session create / list, invite --------------------------------------------------------------


def test_session_create_prints_the_id_and_a_working_link_per_role(
    served: ServerProcess, image: Path
) -> None:
    result = cli(
        "session",
        "create",
        str(image),
        "--title",
        "Poster v3",
        "--server",
        served.url,
        "--token",
        ADMIN_TOKEN,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.strip().splitlines()
    head = re.fullmatch(r"Session (\S+): Poster v3 \(64x48\)", lines[0])
    assert head, lines[0]
    session_id = head[1]
    links = {}
    for line in lines[1:]:
        role, url = line.split()
        links[role] = url
    assert sorted(links) == sorted(ROLES)
    for role, url in links.items():
        link = httpx.URL(url)
        assert str(link.copy_with(query=None)) == f"{served.url}/s/{session_id}", url
        token = link.params["token"]
        # A role link: it says what it is, and is good only for joining.
        seen = httpx.get(f"{served.url}/api/join", headers={"Authorization": f"Bearer {token}"})
        assert seen.json() == {"link": True, "role": role, "session": session_id}
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
    assert len({httpx.URL(u).params["token"] for u in links.values()}) == len(ROLES)

    listed = cli("session", "list", "--server", served.url, "--token", ADMIN_TOKEN)
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.startswith(session_id) and "Poster v3" in line and "64x48" in line
        for line in listed.stdout.splitlines()
    ), listed.stdout


def test_client_commands_take_the_server_and_token_from_the_environment(
    served: ServerProcess, image: Path
) -> None:
    env = {"PROOFROOM_URL": served.url, "PROOFROOM_ADMIN_TOKEN": ADMIN_TOKEN}
    created = cli("session", "create", str(image), "--title", "Env", env=env)
    assert created.returncode == 0, created.stderr
    session_id = created.stdout.split()[1].rstrip(":")
    listed = cli("session", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert session_id in listed.stdout


def test_invite_prints_json_with_a_token_and_url(served: ServerProcess, image: Path) -> None:
    created = cli("session", "create", str(image), "--server", served.url, "--token", ADMIN_TOKEN)
    assert created.returncode == 0, created.stderr
    session_id = created.stdout.split()[1].rstrip(":")
    result = cli(
        "invite",
        session_id,
        "--role",
        "commenter",
        "--name",
        "Ana",
        "--server",
        served.url,
        "--token",
        ADMIN_TOKEN,
    )
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert set(made) == {"token", "url"}
    assert httpx.URL(made["url"]).params["token"] == made["token"]
    assert f"/s/{session_id}" in made["url"]
    me = whoami(served.url, made["token"])
    assert (me["role"], me["name"], me["session"]) == ("commenter", "Ana", session_id)


# -- errors: one clean line, never a traceback ---------------------------------------------------


def test_session_create_with_a_non_image_fails_cleanly(
    served: ServerProcess, tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    result = cli("session", "create", str(text), "--server", served.url, "--token", ADMIN_TOKEN)
    line = assert_clean_error(result)
    assert "image" in line.lower(), line
    assert result.stdout == ""


def test_session_create_with_a_missing_file_fails_cleanly(
    served: ServerProcess, tmp_path: Path
) -> None:
    result = cli(
        "session",
        "create",
        str(tmp_path / "nope.png"),
        "--server",
        served.url,
        "--token",
        ADMIN_TOKEN,
    )
    assert "nope.png" in assert_clean_error(result)


def test_a_wrong_token_fails_cleanly(served: ServerProcess) -> None:
    result = cli("session", "list", "--server", served.url, "--token", "pr_wrong")
    assert "401" in assert_clean_error(result)


def test_an_invite_for_an_unknown_session_fails_cleanly(served: ServerProcess) -> None:
    result = cli(
        "invite",
        "no-such-session",
        "--role",
        "viewer",
        "--name",
        "X",
        "--server",
        served.url,
        "--token",
        ADMIN_TOKEN,
    )
    assert "404" in assert_clean_error(result)


def test_an_unreachable_server_fails_cleanly() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = cli(
            "session", "list", "--server", f"http://127.0.0.1:{port}", "--token", ADMIN_TOKEN
        )
    assert_clean_error(result)
