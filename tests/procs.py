"""``proofroom serve`` as a real subprocess: start it, read its URL, stop or kill it."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from .helpers import ADMIN_TOKEN, FAST_PATHS_ENV

READY = re.compile(r"^Proofroom is running at (http://127\.0\.0\.1:(\d+))/\?token=(\S+)$")


def clean_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment without any ``PROOFROOM_*`` variable, plus ``extra``.

    ``PROOFROOM_FAST_PATHS`` is kept (scripts/test runs the sync tests with it off). A value
    of None in ``extra`` leaves that variable out.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PROOFROOM_") or k == FAST_PATHS_ENV
    }
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def proofroom_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "proofroom", *args]


class ServerProcess:
    """One ``proofroom serve --port 0`` process on ``data`` (None: no ``--data`` flag).

    ``with ServerProcess(data) as srv: srv.start()`` — leaving the block always ends the
    process (SIGKILL if it still runs) and reaps it. stdout and stderr are merged and drained
    by a thread into :attr:`lines`, so the pipe never fills up.
    """

    def __init__(
        self,
        data: Path | None,
        *,
        admin_token: str | None = ADMIN_TOKEN,
        env: Mapping[str, str | None] | None = None,
        args: tuple[str, ...] = (),
        command: tuple[str, ...] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.data = data
        #: What runs ``proofroom`` (default: this interpreter's ``-m proofroom``).
        self._command = command or tuple(proofroom_cmd())
        self._cwd = cwd
        self._env = clean_env({"PROOFROOM_ADMIN_TOKEN": admin_token, **(env or {})})
        self._args = args
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._lines_q: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None
        self.url = ""
        self.port = 0
        self.token = ""
        self.ready_line = ""

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    def start(self, timeout: float = 30.0, *, wait_accepting: bool = True) -> ServerProcess:
        """Start the server and wait (at most ``timeout`` s) for its ready line.

        With ``wait_accepting`` it then also polls (bounded) until the port accepts a TCP
        connection. The ready line is printed from the app's lifespan startup, which uvicorn
        runs before it starts listening on the socket the CLI bound; tests/test_cli.py checks
        that the printed URL answers at once, everything else should not fail on that race.
        """
        assert self.proc is None, "already started"
        self.proc = subprocess.Popen(
            [
                *self._command,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *(["--data", str(self.data)] if self.data is not None else []),
                *self._args,
            ],
            cwd=self._cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=self._env,
        )
        self._reader = threading.Thread(
            target=self._drain, name="proofroom-serve-output", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise TimeoutError(f"no ready line within {timeout} s:\n{self.output()}")
            try:
                line = self._lines_q.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait(timeout=10)
                raise RuntimeError(
                    f"proofroom serve exited ({code}) before ready:\n{self.output()}"
                )
            match = READY.match(line)
            if match:
                self.ready_line = line
                self.url, self.port, self.token = match[1], int(match[2]), match[3]
                if wait_accepting:
                    self._wait_accepting(deadline)
                return self

    async def astart(self, timeout: float = 30.0) -> ServerProcess:
        """:meth:`start` without blocking the event loop."""
        return await asyncio.to_thread(self.start, timeout)

    def _wait_accepting(self, deadline: float) -> None:
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise TimeoutError(
                        f"port {self.port} never accepted:\n{self.output()}"
                    ) from None
                time.sleep(0.01)

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                line = raw.rstrip("\n")
                self.lines.append(line)
                self._lines_q.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us
        finally:
            self._lines_q.put(None)

    def wait_for_line(self, pattern: str, timeout: float = 10.0) -> str:
        """The first output line (after the ready line) that matches ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines_q.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            if rx.search(line):
                return line
        raise TimeoutError(f"no line matching {pattern!r}:\n{self.output()}")

    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_and_wait(self, sig: int, timeout: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self._close()
        return code

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful shutdown); return the exit code.

        Raises subprocess.TimeoutExpired (after killing it) if it does not exit in time.
        """
        try:
            return self._signal_and_wait(signal.SIGTERM, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def send_kill(self) -> None:
        """Send SIGKILL and return at once (reap it later with :meth:`kill`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def kill(self) -> int | None:
        """SIGKILL (no shutdown at all) and reap; None if it was never started."""
        if self.proc is None:
            return None
        return self._signal_and_wait(signal.SIGKILL, 15.0)

    def _close(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            return
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
