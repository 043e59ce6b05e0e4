"""Sync benchmark for Proofroom, measured next to a plain websocket broadcast baseline.

Scenarios (all by default; pick with ``--scenarios``):

- ``rooms``: N clients in M rooms, each writing one small pin update per second; latency from
  the writer's send to every other client's decoded receipt (p50/p99/max), messages received
  vs expected, server CPU and RSS. The same load runs against ``scripts/baseline_server.py``
  (no CRDT, no persistence) in the same run.
- ``presenter``: one room; a presenter sends awareness (cursor + timestamp) at 30 Hz; latency
  at every other client, against both servers.
- ``late_join``: a document of 2,000 pins and 10,000 replies is written through the server;
  a fresh client is timed from websocket open to a synced doc with every pin present.
- ``startup``: ``proofroom serve`` from process start to the first 200 from ``/healthz``.
- ``idle_memory``: server RSS per idle, synced connection.

Clients are real y-websocket participants (one pycrdt Doc and Awareness each) spread over
``--workers`` processes. Send and receive times are ``time.monotonic()``, one clock for every
process on Linux. Everything runs on this machine: the load generator competes with the server
for CPU, and the report says how much it used. Whatever else runs on the machine competes too:
each server start waits (``--quiet-wait``) for an idle machine, the CPU of other processes is
recorded second by second, and latency is also given for the quiet seconds alone.

    .venv/bin/python scripts/bench_sync.py            # everything, ~5-8 minutes
    .venv/bin/python scripts/bench_sync.py --quick    # smoke run, ~2 minutes
    .venv/bin/python scripts/bench_sync.py --scenarios rooms --servers baseline
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import logging
import multiprocessing
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
from pycrdt import (
    Array,
    Awareness,
    Doc,
    Map,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from websockets.client import ClientProtocol
from websockets.exceptions import WebSocketException
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from proofroom.shared.protocol import MessageType, SyncStep

logger = logging.getLogger("bench_sync")

SCRIPTS = Path(__file__).resolve().parent
#: How often a y-protocols client renews its awareness state (outdatedTimeout / 2).
AWARENESS_RENEW_S = 15.0
IMAGE_SIZE = 512
SCENARIOS = ("rooms", "presenter", "late_join", "startup", "idle_memory")

# ---------------------------------------------------------------------------------------------
# Small helpers


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    """p50 / p99 / max of latencies given in seconds, reported in milliseconds."""
    values = sorted(latencies_s)
    return {
        "p50_ms": percentile(values, 0.50) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": (values[-1] * 1000) if values else float("nan"),
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def png_bytes(size: int = IMAGE_SIZE) -> bytes:
    """A small generated PNG to create sessions with."""
    from PIL import Image

    image = Image.new("RGB", (size, size), (200, 180, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def token_of(url: str) -> str:
    """The ``token`` query parameter of a share link."""
    return parse_qs(urlsplit(url).query)["token"][0]


async def sleep_until(deadline: float) -> None:
    """Sleep until ``time.monotonic()`` reaches ``deadline``."""
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# ---------------------------------------------------------------------------------------------
# Server processes


@dataclass
class Server:
    """A server under test, run as a child process and watched with psutil."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    admin_token: str = ""

    @property
    def http(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        """The server process and any children it started."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's process tree so far."""
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        """Resident memory of the server's process tree, bytes."""
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote to stdout/stderr."""
        text = (self.workdir / "server.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Interrupt the server (as Ctrl-C would) and wait; kill it if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop on SIGINT; killing it", self.kind)
                self.proc.kill()
                self.proc.wait()


def proofroom_command(port: int, data_dir: Path, prefix: str | None) -> list[str]:
    """``proofroom serve`` from the same environment as this interpreter (or ``prefix``)."""
    script = Path(sys.executable).with_name("proofroom")
    if prefix:
        head = shlex.split(prefix)
    elif script.exists():
        head = [str(script)]
    else:
        head = [sys.executable, "-m", "proofroom"]
    return [*head, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(data_dir)]


def launch(kind: str, opts: argparse.Namespace) -> tuple[subprocess.Popen[bytes], Server]:
    """Start a server process without waiting for it to be ready."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-", dir=opts.tmp))
    env = dict(os.environ)
    token = ""
    if kind == "proofroom":
        token = "bench-" + os.urandom(12).hex()
        env["PROOFROOM_ADMIN_TOKEN"] = token
        cmd = proofroom_command(port, workdir / "data", opts.proofroom_cmd)
    else:
        cmd = [
            sys.executable,
            str(SCRIPTS / "baseline_server.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            opts.baseline_ws,
        ]
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return proc, Server(kind, port, proc, workdir, token)


def wait_ready(server: Server, timeout: float = 30.0, poll_s: float = 0.005) -> float:
    """Poll ``/healthz`` until it answers 200; return the seconds that took."""
    start = time.monotonic()
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() - start < timeout:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{server.kind} exited early:\n{server.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{server.http}/healthz").status_code == 200:
                    return time.monotonic() - start
            time.sleep(poll_s)
    raise RuntimeError(f"{server.kind} not ready after {timeout}s:\n{server.log_tail()}")


def wait_for_quiet(max_wait: float, busy_limit_pct: float = 15.0, calm_s: int = 3) -> float:
    """Wait until other processes leave the machine alone; the busy % seen last.

    The benchmark shares the machine with whatever else runs on it, and the load it measures
    is CPU-bound. Starting a run during someone else's test suite would measure theirs.
    """
    started = time.monotonic()
    calm = 0
    busy = psutil.cpu_percent(interval=1.0)
    while time.monotonic() - started < max_wait:
        calm = calm + 1 if busy < busy_limit_pct else 0
        if calm >= calm_s:
            return busy
        busy = psutil.cpu_percent(interval=1.0)
    logger.warning(
        "machine still %.0f%% busy after waiting %.0fs; measuring anyway", busy, max_wait
    )
    return busy


@contextlib.contextmanager
def running(kind: str, opts: argparse.Namespace) -> Iterator[Server]:
    """A ready server for the duration of a ``with`` block; its files go afterwards."""
    if opts.quiet_wait > 0:
        wait_for_quiet(opts.quiet_wait)
    _, server = launch(kind, opts)
    try:
        wait_ready(server)
        yield server
    finally:
        server.stop()
        if not opts.keep_data:
            shutil.rmtree(server.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Who connects where


async def create_session(http: httpx.AsyncClient, title: str, image: bytes) -> dict[str, Any]:
    """``POST /api/sessions`` as the admin; the session JSON."""
    files = {"image": ("bench.png", image, "image/png")}
    reply = await http.post("/api/sessions", files=files, data={"title": title})
    reply.raise_for_status()
    return dict(reply.json())


async def invite_token(http: httpx.AsyncClient, session_id: str, role: str, name: str) -> str:
    """A named invite's token (``POST /api/sessions/{id}/invites``)."""
    body = {"role": role, "name": name, "expires_in": 24 * 3600}
    reply = await http.post(f"/api/sessions/{session_id}/invites", json=body)
    reply.raise_for_status()
    return str(reply.json()["token"])


async def joined_token(http: httpx.AsyncClient, link: str, name: str) -> str:
    """A person's token, from joining a role link (a link's own token only joins)."""
    headers = {"Authorization": f"Bearer {token_of(link)}"}
    reply = await http.post("/api/join", json={"name": name}, headers=headers)
    reply.raise_for_status()
    return str(reply.json()["token"])


async def whoami(http: httpx.AsyncClient, token: str) -> str:
    """The user id a token acts as (pins must carry it as ``author``)."""
    reply = await http.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    reply.raise_for_status()
    return str(reply.json()["user_id"])


def room_layout(n_clients: int, n_rooms: int) -> list[int]:
    """Room index of each client: contiguous blocks, as even as possible."""
    return [cid * n_rooms // n_clients for cid in range(n_clients)]


async def proofroom_specs(
    server: Server, rooms: list[int], roles: list[str], shared_tokens: bool
) -> list[dict[str, Any]]:
    """Sessions, invites and user ids for every client of a Proofroom run."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(
        base_url=server.http, headers=headers, timeout=60, limits=limits, trust_env=False
    ) as http:
        image = png_bytes()
        sessions = [
            await create_session(http, f"bench room {k}", image) for k in range(max(rooms) + 1)
        ]
        gate = asyncio.Semaphore(16)
        shared: dict[tuple[int, str], tuple[str, str]] = {}

        async def credentials(cid: int) -> tuple[str, str]:
            room, role = rooms[cid], roles[cid]
            async with gate:
                if not shared_tokens:
                    token = await invite_token(http, sessions[room]["id"], role, f"bench-{cid}")
                    return token, await whoami(http, token)
                if (room, role) not in shared:
                    link = sessions[room]["links"][role]
                    token = await joined_token(http, link, f"bench {role} {room}")
                    shared[(room, role)] = (token, await whoami(http, token))
                return shared[(room, role)]

        creds = await asyncio.gather(*(credentials(cid) for cid in range(len(rooms))))
    sizes = Counter(rooms)
    return [
        {
            "cid": cid,
            "url": f"ws://127.0.0.1:{server.port}/ws/{sessions[room]['id']}?token={token}",
            "room": room,
            "room_size": sizes[room],
            "user_id": user_id,
            "role": roles[cid],
        }
        for cid, (room, (token, user_id)) in enumerate(zip(rooms, creds, strict=True))
    ]


def baseline_specs(server: Server, rooms: list[int], roles: list[str]) -> list[dict[str, Any]]:
    """Client specs for the broadcast baseline: rooms by name, made-up user ids."""
    sizes = Counter(rooms)
    return [
        {
            "cid": cid,
            "url": f"ws://127.0.0.1:{server.port}/ws/room-{room}",
            "room": room,
            "room_size": sizes[room],
            "user_id": f"user-{cid}",
            "role": roles[cid],
        }
        for cid, room in enumerate(rooms)
    ]


def client_specs(
    server: Server, rooms: list[int], roles: list[str], opts: argparse.Namespace
) -> list[dict[str, Any]]:
    """Client specs for either kind of server."""
    if server.kind == "baseline":
        return baseline_specs(server, rooms, roles)
    started = time.monotonic()
    specs = asyncio.run(proofroom_specs(server, rooms, roles, opts.shared_tokens))
    logger.info(
        "%d sessions, %d %s tokens in %.1fs",
        max(rooms) + 1,
        len(rooms),
        "shared" if opts.shared_tokens else "invite",
        time.monotonic() - started,
    )
    return specs


# ---------------------------------------------------------------------------------------------
# One simulated participant (runs in a worker process)


class Recorder:
    """Latencies and counts of one measurement run in one worker process."""

    def __init__(self, start: float = float("inf"), end: float = float("inf")) -> None:
        self.start, self.end = start, end
        self.latencies = array("d")
        self.sent_at = array("d")
        self.duplicates = 0
        self.sent_by_room: Counter[int] = Counter()

    def in_window(self, t_send: float) -> bool:
        """Whether a message sent at ``t_send`` is measured (not warm-up, not drain)."""
        return self.start <= t_send < self.end

    def received(self, t_send: float, t_received: float) -> None:
        """Record one decoded receipt."""
        if self.in_window(t_send):
            self.latencies.append(t_received - t_send)
            self.sent_at.append(t_send)

    def sent(self, room: int, t_send: float) -> None:
        """Record one send (only in-window sends are expected to arrive)."""
        if self.in_window(t_send):
            self.sent_by_room[room] += 1


@dataclass
class ClientEvents:
    """What went wrong for the clients of one worker, by kind."""

    closes: Counter[str] = field(default_factory=Counter)
    auth_denied: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        """Keep the first few error messages, count them all."""
        self.closes["error"] += 1
        if len(self.errors) < 10:
            self.errors.append(message)


class Link(asyncio.Protocol):
    """A websocket client connection: websockets' sans-I/O protocol on an asyncio transport.

    Frames are handed to ``on_frame`` straight from ``data_received``, without a task switch
    or a queue per message: with a thousand clients on two shared cores, the load generator's
    cost per message decides how much CPU is left for the server under test.
    """

    def __init__(self, url: str, on_frame: Callable[[bytes], None]) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.on_frame = on_frame
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    @classmethod
    async def open(cls, url: str, on_frame: Callable[[bytes], None], limit_s: float) -> Link:
        """Connect and finish the websocket handshake."""
        parts = urlsplit(url)
        link = cls(url, on_frame)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(limit_s):
            await loop.create_connection(lambda: link, parts.hostname, parts.port)
            await link.opened
        return link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self._handshake_done()
            elif event.opcode is Opcode.BINARY:
                self.on_frame(bytes(event.data))
        self._flush()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        close = self.protocol.close_rcvd
        why = f"{close.code} {close.reason}".strip() if close else f"no close frame ({exc!r})"
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
        if not self.closed.done():
            self.closed.set_result(why)

    def send(self, payload: bytes) -> bool:
        """Send one binary frame; False when the connection is no longer open."""
        if self.protocol.state is not State.OPEN:
            return False
        self.protocol.send_binary(payload)
        self._flush()
        return True

    async def close(self) -> None:
        """Close the websocket (close frame, then TCP) and wait briefly for the end."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(1000)
            self._flush()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self.closed
        if self.transport is not None:
            self.transport.abort()

    def _handshake_done(self) -> None:
        if self.opened.done():
            return
        if self.protocol.handshake_exc is not None:
            self.opened.set_exception(self.protocol.handshake_exc)
        else:
            self.opened.set_result(None)

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.protocol.close_expected() and self.protocol.state is State.CLOSED:
            self.transport.close()


class BenchClient:
    """One participant: a websocket, its own pycrdt Doc and Awareness.

    Every received frame is handled as a y-websocket client would: sync messages are applied
    to the doc, awareness updates to the awareness. Latency is taken from the decoded values
    (the pin ``text`` or the awareness ``cursor``), stamped with the frame's arrival time.
    """

    def __init__(
        self, spec: dict[str, Any], recorder: Recorder, events: ClientEvents, observe: bool
    ) -> None:
        self.spec = spec
        self.recorder = recorder
        self.events = events
        self.doc = Doc()
        self.pins = self.doc.get("pins", type=Map)
        self.awareness = Awareness(self.doc)
        self.awareness.set_local_state(
            {
                "user": {
                    "id": spec["user_id"],
                    "name": f"bench {spec['cid']}",
                    "colour": f"#{random.randrange(1 << 24):06x}",
                    "role": spec["role"],
                },
                "cursor": None,
            }
        )
        self.link: Link | None = None
        self.synced = asyncio.Event()
        self.pin: Map[Any] | None = None
        self._rx_time = 0.0
        self._last_seq: dict[Any, int] = {}
        self._subscriptions: list[Any] = []
        if observe:
            self._subscriptions.append(self.pins.observe_deep(self._on_pins))
            self._subscriptions.append(self.awareness.observe(self._on_awareness))

    @property
    def is_open(self) -> bool:
        """Whether the websocket is connected."""
        return self.link is not None and self.link.protocol.state is State.OPEN

    async def connect(self, limit_s: float) -> None:
        """Open the websocket, start the y-sync handshake and wait for step 2."""
        self.link = await Link.open(self.spec["url"], self._on_frame, limit_s)
        self.link.closed.add_done_callback(self._on_closed)
        self.send(create_sync_message(self.doc))
        self.send_awareness()
        async with asyncio.timeout(limit_s):
            await self.synced.wait()

    async def close(self) -> None:
        """Close the websocket."""
        if self.link is not None:
            self.link.closed.remove_done_callback(self._on_closed)
            await self.link.close()

    def send(self, frame: bytes) -> None:
        """Send one frame, unless the connection is gone (its close is recorded already)."""
        if self.link is not None:
            self.link.send(frame)

    def send_awareness(self) -> None:
        """Broadcast this client's awareness state."""
        update = self.awareness.encode_awareness_update([self.awareness.client_id])
        self.send(create_awareness_message(update))

    def renew_awareness(self) -> None:
        """What y-protocols does every ~15 s so that peers do not time this client out."""
        self.awareness.set_local_state(self.awareness.get_local_state())
        self.send_awareness()

    def create_pin(self) -> None:
        """Add this client's own pin (the one its writes will update)."""
        pin_id = f"bench-{self.spec['cid']}-{os.urandom(4).hex()}"
        fields = {
            "x": random.uniform(0, IMAGE_SIZE),
            "y": random.uniform(0, IMAGE_SIZE),
            "author": self.spec["user_id"],
            "text": "",
            "status": "open",
            "created_at": time.time(),
            "thread": Array(),
        }
        self.write(lambda: self.pins.__setitem__(pin_id, Map(fields)))
        self.pin = self.pins[pin_id]

    def write_text(self, seq: int) -> float:
        """Set the own pin's text to a stamped value and send the update; the send time."""
        assert self.pin is not None
        pin = self.pin
        t_send = round(time.monotonic(), 6)  # exactly what receivers will decode
        text = f"{self.spec['cid']} {seq} {t_send:.6f}"
        self.write(lambda: pin.__setitem__("text", text))
        return t_send

    def write(self, change: Callable[[], None]) -> None:
        """Apply ``change`` to the local doc and send exactly the update it made."""
        before = self.doc.get_state()
        with self.doc.transaction():
            change()
        self.send(create_update_message(self.doc.get_update(before)))

    def _on_closed(self, closed: asyncio.Future[str]) -> None:
        self.events.closes[closed.result()] += 1

    def _on_frame(self, frame: bytes) -> None:
        self._rx_time = time.monotonic()
        try:
            self._handle(frame)
        except Exception as exc:  # a broken frame must not pass silently
            self.events.error(f"client {self.spec['cid']}: {exc!r}")

    def _handle(self, frame: bytes) -> None:
        kind = frame[0]
        if kind == MessageType.SYNC:
            reply = handle_sync_message(frame[1:], self.doc)
            if reply is not None:
                self.send(reply)
            if frame[1] == SyncStep.STEP2:
                self.synced.set()
        elif kind == MessageType.AWARENESS:
            self.awareness.apply_awareness_update(read_message(frame[1:]), "remote")
        elif kind == MessageType.AUTH:
            reason = frame[2:].decode(errors="replace")
            self.events.auth_denied[reason[:80]] += 1
        elif kind == MessageType.QUERY_AWARENESS:
            self.send_awareness()

    def _on_pins(self, events: list[Any]) -> None:
        for event in events:
            if len(event.path) != 1:
                continue
            change = event.keys.get("text")
            if change is None or change.get("action") == "delete":
                continue
            parts = str(change.get("newValue", "")).split(" ")
            if len(parts) == 3 and int(parts[0]) != self.spec["cid"]:  # not our own write
                self._stamp(int(parts[0]), int(parts[1]), float(parts[2]))

    def _on_awareness(self, topic: str, changes: tuple[dict[str, Any], Any]) -> None:
        if topic != "update":
            return
        summary, origin = changes
        if origin == "local":
            return
        for client_id in summary["added"] + summary["updated"]:
            state = self.awareness.states.get(client_id) or {}
            cursor = state.get("cursor")
            if isinstance(cursor, dict) and "t" in cursor and "seq" in cursor:
                self._stamp(("awareness", client_id), int(cursor["seq"]), float(cursor["t"]))

    def _stamp(self, sender: Any, seq: int, t_send: float) -> None:
        if seq <= self._last_seq.get(sender, 0):
            self.recorder.duplicates += 1
            return
        self._last_seq[sender] = seq
        self.recorder.received(t_send, self._rx_time)


# ---------------------------------------------------------------------------------------------
# Worker process: runs a share of the clients, driven by commands over a pipe


async def loop_lag(start: float, until: float, samples: list[float], tick: float = 0.01) -> None:
    """Sample how late the event loop wakes up (a saturated load generator shows here)."""
    await sleep_until(start)
    while time.monotonic() < until:
        start = time.monotonic()
        await asyncio.sleep(tick)
        samples.append(time.monotonic() - start - tick)


class Worker:
    """Command handlers of one load-generator process."""

    def __init__(self, conn: Any, index: int) -> None:
        self.conn = conn
        self.index = index
        self.clients: list[BenchClient] = []
        self.recorder = Recorder()
        self.events = ClientEvents()

    async def serve(self) -> None:
        """Answer commands until told to exit."""
        while True:
            command, args = await asyncio.to_thread(self.conn.recv)
            if command == "exit":
                return
            try:
                result = await getattr(self, f"cmd_{command}")(**args)
            except Exception as exc:  # reported to the parent, which stops the run
                logger.exception("worker %d: %s failed", self.index, command)
                result = {"failed": f"{command}: {exc!r}"}
            self.conn.send(result)

    def _events(self) -> dict[str, Any]:
        events = self.events
        return {
            "closes": dict(events.closes),
            "auth_denied": dict(events.auth_denied),
            "errors": list(events.errors),
        }

    async def cmd_connect(
        self, specs: list[dict[str, Any]], t0: float, rate: float, observe: bool, limit_s: float
    ) -> dict[str, Any]:
        """Connect and sync every client, client ``cid`` at ``t0 + cid / rate``."""

        async def one(spec: dict[str, Any]) -> float | str:
            await sleep_until(t0 + spec["cid"] / rate)
            client = BenchClient(spec, self.recorder, self.events, observe)
            self.clients.append(client)
            started = time.monotonic()
            try:
                await client.connect(limit_s)
            except (TimeoutError, OSError, WebSocketException) as exc:
                return f"client {spec['cid']}: {exc!r}"
            return time.monotonic() - started

        outcomes = await asyncio.gather(*(one(spec) for spec in specs))
        return {
            "connect_s": [o for o in outcomes if isinstance(o, float)],
            "failed": [o for o in outcomes if isinstance(o, str)][:5],
            "n_failed": sum(isinstance(o, str) for o in outcomes),
            **self._events(),
        }

    async def cmd_pins(self, t0: float, rate: float, limit_s: float) -> dict[str, Any]:
        """Each client adds its pin, then waits to see every pin of its room."""

        async def one(client: BenchClient) -> bool:
            await sleep_until(t0 + client.spec["cid"] / rate)
            client.create_pin()
            deadline = time.monotonic() + limit_s
            while len(client.pins) < client.spec["room_size"]:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.05)
            return True

        complete = await asyncio.gather(*(one(c) for c in self.clients if c.synced.is_set()))
        return {"complete": sum(complete), "clients": len(complete), **self._events()}

    async def cmd_rooms_run(
        self, t_start: float, t_measure: float, t_end: float, drain: float, period: float
    ) -> dict[str, Any]:
        """Every client writes once per ``period`` from ``t_start`` to ``t_end``."""
        self.recorder = recorder = Recorder(t_measure, t_end)
        for client in self.clients:
            client.recorder = recorder

        async def writer(client: BenchClient) -> None:
            offset = random.uniform(0, period)
            renew_at = t_start + random.uniform(0, AWARENESS_RENEW_S)
            seq, next_at = 0, t_start + offset
            while next_at < t_end:
                await sleep_until(next_at)
                seq += 1
                recorder.sent(client.spec["room"], client.write_text(seq))
                if next_at >= renew_at:
                    renew_at += AWARENESS_RENEW_S
                    client.renew_awareness()
                next_at += period

        lags: list[float] = []
        with gc_paused():
            await asyncio.gather(
                loop_lag(t_measure, t_end, lags),
                *(writer(c) for c in self.clients if c.pin is not None),
            )
            await sleep_until(t_end + drain)
        return self._run_result(lags)

    async def cmd_presenter_run(
        self,
        presenter: int,
        hz: float,
        t_start: float,
        t_measure: float,
        t_end: float,
        drain: float,
    ) -> dict[str, Any]:
        """The presenter (if it is ours) moves its cursor at ``hz``; the rest watch."""
        self.recorder = recorder = Recorder(t_measure, t_end)
        for client in self.clients:
            client.recorder = recorder

        async def present(client: BenchClient) -> None:
            seq, next_at = 0, t_start
            while next_at < t_end:
                await sleep_until(next_at)
                seq += 1
                t_send = round(time.monotonic(), 6)
                x = IMAGE_SIZE / 2 + 200 * (seq % 60) / 60
                cursor = {"x": x, "y": IMAGE_SIZE / 2, "t": t_send, "seq": seq}
                client.awareness.set_local_state_field("cursor", cursor)
                client.send_awareness()
                recorder.sent(client.spec["room"], t_send)
                next_at += 1 / hz

        async def renewer(client: BenchClient) -> None:
            next_at = t_start + random.uniform(0, AWARENESS_RENEW_S)
            while next_at < t_end:
                await sleep_until(next_at)
                client.renew_awareness()
                next_at += AWARENESS_RENEW_S

        lags: list[float] = []
        tasks = [present(c) if c.spec["cid"] == presenter else renewer(c) for c in self.clients]
        with gc_paused():
            await asyncio.gather(loop_lag(t_measure, t_end, lags), *tasks)
            await sleep_until(t_end + drain)
        return self._run_result(lags)

    def _run_result(self, lags: list[float]) -> dict[str, Any]:
        recorder = self.recorder
        self.recorder = Recorder()
        for client in self.clients:
            client.recorder = self.recorder
        window_lags = sorted(lags)
        return {
            "latencies": recorder.latencies.tobytes(),
            "sent_at": recorder.sent_at.tobytes(),
            "duplicates": recorder.duplicates,
            "sent_by_room": dict(recorder.sent_by_room),
            "loop_lag_p99_ms": percentile(window_lags, 0.99) * 1000,
            "loop_lag_max_ms": (window_lags[-1] * 1000) if window_lags else float("nan"),
            "open": sum(1 for c in self.clients if c.is_open),
            "gc": (len(GC_PAUSES), max(GC_PAUSES, default=0), sum(GC_PAUSES)),
            **self._events(),
        }

    async def cmd_close(self) -> dict[str, Any]:
        """Close every client."""
        await asyncio.gather(*(c.close() for c in self.clients))
        self.clients.clear()
        return {}


GC_PAUSES: list[float] = []


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC in the load generator while it measures (its pauses are not the server's).

    The objects alive after connecting are frozen out of future collections; garbage made
    during a run (a few MiB) is collected after it.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def _gc_timer() -> Callable[[str, dict[str, int]], None]:
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        elif info.get("generation", 0) >= 1:
            GC_PAUSES.append(time.perf_counter() - started[0])

    return callback


def worker_main(conn: Any, index: int, log_level: int) -> None:
    """Entry point of a load-generator process."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s worker{index} %(message)s")
    gc.callbacks.append(_gc_timer())
    asyncio.run(Worker(conn, index).serve())


class WorkerPool:
    """Load-generator processes; client ``cid`` runs in worker ``cid % n``."""

    def __init__(self, n: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns = []
        self.procs = []
        for index in range(n):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, args=(child, index, logger.getEffectiveLevel()), daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def split(self, specs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Specs per worker."""
        return [specs[index :: len(self.conns)] for index in range(len(self.conns))]

    def send(self, command: str, args: list[dict[str, Any]] | dict[str, Any]) -> None:
        """Send a command to every worker (one args dict each, or the same to all)."""
        per_worker = args if isinstance(args, list) else [args] * len(self.conns)
        for conn, worker_args in zip(self.conns, per_worker, strict=True):
            conn.send((command, worker_args))

    def receive(self) -> list[dict[str, Any]]:
        """Every worker's answer to the last command; raise if one failed."""
        results = [conn.recv() for conn in self.conns]
        for result in results:
            if "failed" in result and isinstance(result["failed"], str):
                raise RuntimeError(f"worker failed: {result['failed']}")
        return results

    def call(self, command: str, args: list[dict[str, Any]] | dict[str, Any]) -> list[dict]:
        """Send a command and wait for every answer."""
        self.send(command, args)
        return self.receive()

    def cpu_seconds(self) -> float:
        """CPU time used by all workers so far."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = psutil.Process(proc.pid).cpu_times()
                total += times.user + times.system
        return total

    def close(self) -> None:
        """Close every client and end the processes."""
        with contextlib.suppress(OSError, EOFError, RuntimeError):
            self.call("close", {})
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("exit", {}))
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


# ---------------------------------------------------------------------------------------------
# Measurement helpers used by the scenarios


def merge_events(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Closes, auth denials and errors of all workers."""
    closes: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    errors: list[str] = []
    for result in results:
        closes.update(result.get("closes", {}))
        denied.update(result.get("auth_denied", {}))
        errors.extend(result.get("errors", []))
    return {"closes": dict(closes), "auth_denied": dict(denied), "errors": errors[:10]}


def connect_all(
    pool: WorkerPool, specs: list[dict[str, Any]], opts: argparse.Namespace, observe: bool = True
) -> dict[str, Any]:
    """Connect every client through the workers; summary of connect times and failures."""
    t0 = time.monotonic() + 0.5
    started = time.monotonic()
    args = [
        {"specs": part, "t0": t0, "rate": opts.connect_rate, "observe": observe, "limit_s": 60.0}
        for part in pool.split(specs)
    ]
    results = pool.call("connect", args)
    times = sorted(t for r in results for t in r["connect_s"])
    summary = {
        "connected": len(times),
        "failed": sum(r["n_failed"] for r in results),
        "connect_p50_ms": percentile(times, 0.5) * 1000,
        "connect_p99_ms": percentile(times, 0.99) * 1000,
        "connect_phase_s": time.monotonic() - started,
        **merge_events(results),
    }
    if summary["failed"]:
        logger.warning(
            "%d clients failed to connect: %s",
            summary["failed"],
            [f for r in results for f in r["failed"]][:3],
        )
    logger.info(
        "connected %d/%d clients in %.1fs (p50 %.1f ms, p99 %.1f ms)",
        len(times),
        len(specs),
        summary["connect_phase_s"],
        summary["connect_p50_ms"],
        summary["connect_p99_ms"],
    )
    return summary


@dataclass
class Window:
    """CPU and memory of the server and the load generator over a measured interval."""

    start: float
    server_cpu_pct: float
    server_cpu_s: float
    server_rss_mib_end: float
    server_rss_mib_max: float
    load_cpu_pct: float
    machine_cpu_pct: float
    #: Everything else on the machine (other people's work shows here: the figures are noisy).
    other_cpu_pct: float
    #: The same, second by second from ``start`` (% of one core).
    other_cpu_pct_by_second: list[float]


#: A second of the window counts as quiet when other processes used less than this (% of a core)
#: in it and in the seconds either side.
QUIET_OTHER_PCT = 20.0


def watch_window(server: Server, pool: WorkerPool, start: float, end: float) -> Window:
    """Sample CPU and RSS each second from ``start`` to ``end`` while the workers run."""
    time.sleep(max(0.0, start - time.monotonic()))
    me = psutil.Process()

    def cpu_now() -> tuple[float, float, float, float]:
        mine = me.cpu_times()
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return server.cpu_seconds(), pool.cpu_seconds(), mine.user + mine.system, busy

    def other_pct(first: tuple[float, ...], last: tuple[float, ...], seconds: float) -> float:
        server_s, load_s, main_s, busy_s = (b - a for a, b in zip(first, last, strict=True))
        return 100 * max(0.0, busy_s - server_s - load_s - main_s) / seconds

    wall, first = time.monotonic(), cpu_now()
    previous, previous_at = first, wall
    rss_samples, other_by_second = [server.rss()], []
    while (now := time.monotonic()) < end:
        time.sleep(max(0.0, min(previous_at + 1.0, end) - now))
        sample, sampled_at = cpu_now(), time.monotonic()
        other_by_second.append(round(other_pct(previous, sample, sampled_at - previous_at), 1))
        previous, previous_at = sample, sampled_at
        rss_samples.append(server.rss())
    elapsed = previous_at - wall
    server_s, load_s, main_s, busy_s = (b - a for a, b in zip(first, previous, strict=True))
    return Window(
        start=start,
        server_cpu_pct=100 * server_s / elapsed,
        server_cpu_s=server_s,
        server_rss_mib_end=rss_samples[-1] / 2**20,
        server_rss_mib_max=max(rss_samples) / 2**20,
        load_cpu_pct=100 * (load_s + main_s) / elapsed,
        machine_cpu_pct=100 * busy_s / elapsed,
        other_cpu_pct=other_pct(first, previous, elapsed),
        other_cpu_pct_by_second=other_by_second,
    )


def run_summary(
    results: list[dict[str, Any]], expected: int, window: Window, connect: dict[str, Any]
) -> dict[str, Any]:
    """Latency, loss and resource figures of one measured run."""
    latencies = array("d")
    sent_at = array("d")
    for result in results:
        latencies.frombytes(result["latencies"])
        sent_at.frombytes(result["sent_at"])
    received = len(latencies)
    by_second = per_second(sent_at, latencies, window.start)
    quiet = quiet_seconds(window.other_cpu_pct_by_second)
    quiet_latencies = [value for second in quiet for value in by_second.get(second, [])]
    return {
        **latency_summary(list(latencies)),
        "p99_ms_by_second": [
            round(percentile(sorted(by_second.get(second, [])), 0.99) * 1000, 1)
            for second in range(len(window.other_cpu_pct_by_second))
        ],
        "quiet_seconds": len(quiet),
        "quiet": latency_summary(quiet_latencies),
        # CPU per delivered message: comparable between servers even on a busy machine.
        "server_cpu_us_per_delivery": 1e6 * window.server_cpu_s / max(1, received),
        "received": received,
        "expected": expected,
        "lost": expected - received,
        "duplicates": sum(r["duplicates"] for r in results),
        "open_at_end": sum(r["open"] for r in results),
        "load_loop_lag_p99_ms": max(r["loop_lag_p99_ms"] for r in results),
        "load_loop_lag_max_ms": max(r["loop_lag_max_ms"] for r in results),
        "load_gc_pauses": sum(r["gc"][0] for r in results),
        "load_gc_max_ms": max(r["gc"][1] for r in results) * 1000,
        **window.__dict__,
        "connect": connect,
        **merge_events(results),
    }


def quiet_seconds(other_by_second: list[float]) -> list[int]:
    """Seconds that were quiet, as were the seconds either side of them.

    A message sent just after someone else's burst still waits behind the backlog the burst
    left in the server, and one sent just before it is received during it.
    """
    calm = [other < QUIET_OTHER_PCT for other in other_by_second]
    return [second for second in range(len(calm)) if all(calm[max(0, second - 1) : second + 2])]


def per_second(
    sent_at: array[float], latencies: array[float], start: float
) -> dict[int, list[float]]:
    """Latencies grouped by the second of the window their message was sent in."""
    buckets: dict[int, list[float]] = {}
    for t_send, latency in zip(sent_at, latencies, strict=True):
        buckets.setdefault(int(t_send - start), []).append(latency)
    return buckets


def scrape_metrics(server: Server) -> dict[str, float]:
    """The server's Prometheus samples (``name{labels}`` -> value); empty if unavailable."""
    try:
        reply = httpx.get(f"{server.http}/metrics", timeout=5, trust_env=False)
    except httpx.HTTPError:
        return {}
    samples = {}
    for line in reply.text.splitlines():
        name, _, value = line.rpartition(" ")
        if name and not line.startswith("#"):
            with contextlib.suppress(ValueError):
                samples[name] = float(value)
    return samples


def histogram_quantile(samples: dict[str, float], name: str, q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` of a Prometheus histogram.

    NaN without samples, infinity when the quantile lies beyond the last finite bucket.
    """
    total = samples.get(f"{name}_count", 0.0)
    bounds = sorted(
        (float(key.split('le="')[1].rstrip('"}')), count)
        for key, count in samples.items()
        if key.startswith(f"{name}_bucket") and "+Inf" not in key
    )
    for bound, count in bounds:
        if total and count >= q * total:
            return bound
    return float("inf") if total else float("nan")


def schedule(warmup: float, duration: float, lead: float = 1.0) -> dict[str, float]:
    """Absolute start / measure / end times shared with the workers."""
    t_start = time.monotonic() + lead
    return {"t_start": t_start, "t_measure": t_start + warmup, "t_end": t_start + warmup + duration}


# ---------------------------------------------------------------------------------------------
# Scenarios


def rooms_once(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    """N clients in M rooms writing once a second, against one server."""
    rooms = room_layout(opts.clients, opts.rooms)
    roles = ["commenter"] * opts.clients
    sizes = Counter(rooms)
    with running(kind, opts) as server:
        specs = client_specs(server, rooms, roles, opts)
        pool = WorkerPool(opts.workers)
        try:
            connect = connect_all(pool, specs, opts)
            pins = pool.call(
                "pins", {"t0": time.monotonic() + 0.2, "rate": opts.connect_rate, "limit_s": 30.0}
            )
            complete = sum(p["complete"] for p in pins)
            logger.info("%d/%d clients see every pin of their room", complete, len(specs))
            times = schedule(opts.warmup, opts.duration)
            pool.send("rooms_run", {**times, "drain": opts.drain, "period": 1.0})
            window = watch_window(server, pool, times["t_measure"], times["t_end"])
            results = pool.receive()
        finally:
            pool.close()
        metrics = scrape_metrics(server)
        server_log = server.log_tail(5) if server.proc.poll() is not None else ""
    sent: Counter[int] = Counter()
    for result in results:
        sent.update({int(room): n for room, n in result["sent_by_room"].items()})
    expected = sum(n * (sizes[room] - 1) for room, n in sent.items())
    summary = run_summary(results, expected, window, connect)
    summary.update(sent=sum(sent.values()), pins_complete=complete, server_exited=server_log)
    summary["server_metrics"] = metrics
    return summary


def presenter_once(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    """One room: the presenter's cursor at ``--presenter-hz``; everyone else watches."""
    n = opts.presenter_clients
    rooms = [0] * n
    roles = ["editor"] + ["viewer"] * (n - 1)
    with running(kind, opts) as server:
        specs = client_specs(server, rooms, roles, opts)
        pool = WorkerPool(opts.workers)
        try:
            connect = connect_all(pool, specs, opts)
            times = schedule(opts.warmup, opts.presenter_duration)
            pool.send(
                "presenter_run",
                {**times, "presenter": 0, "hz": opts.presenter_hz, "drain": opts.drain},
            )
            window = watch_window(server, pool, times["t_measure"], times["t_end"])
            results = pool.receive()
        finally:
            pool.close()
        metrics = scrape_metrics(server)
    sent = sum(sum(r["sent_by_room"].values()) for r in results)
    summary = run_summary(results, sent * (n - 1), window, connect)
    summary.update(sent=sent, server_metrics=metrics)
    return summary


def compare(
    kinds: list[str],
    run: Callable[[str, argparse.Namespace], dict[str, Any]],
    opts: argparse.Namespace,
) -> dict[str, Any]:
    """Run one load against each server kind, one after the other."""
    out = {}
    for kind in kinds:
        logger.info("--- %s against %s", run.__name__.removesuffix("_once"), kind)
        out[kind] = run(kind, opts)
        figures = out[kind]
        logger.info(
            "%s: p50 %.1f ms p99 %.1f ms max %.1f ms, received %d/%d, server CPU %.0f%%, "
            "RSS %.0f MiB, load CPU %.0f%%",
            kind,
            figures["p50_ms"],
            figures["p99_ms"],
            figures["max_ms"],
            figures["received"],
            figures["expected"],
            figures["server_cpu_pct"],
            figures["server_rss_mib_end"],
            figures["load_cpu_pct"],
        )
    return out


#: Figures of a rooms run that are reported as medians over rounds.
ROUND_FIGURES = (
    "p50_ms",
    "p99_ms",
    "max_ms",
    "server_cpu_pct",
    "server_cpu_us_per_delivery",
    "load_cpu_pct",
)


def compare_rounds(
    kinds: list[str],
    run: Callable[[str, argparse.Namespace], dict[str, Any]],
    opts: argparse.Namespace,
) -> dict[str, Any]:
    """:func:`compare` ``opts.repeat`` times, alternating which server goes first.

    With more than one round, each kind's headline figures are medians over the rounds,
    and ``rounds`` keeps every round's figures (the ratio of two servers is taken per
    round, where they ran side by side, then its median). The details of a kind (delivery
    counts, per-second series, metrics) are those of its last round.
    """
    rounds = []
    for number in range(opts.repeat):
        order = kinds if number % 2 == 0 else kinds[::-1]
        if opts.repeat > 1:
            logger.info("--- round %d of %d", number + 1, opts.repeat)
        rounds.append(compare(order, run, opts))
    if len(rounds) == 1:
        return rounds[0]
    merged: dict[str, Any] = {}
    for kind in kinds:
        figures = dict(rounds[-1][kind])
        figures["rounds"] = [{key: r[kind][key] for key in ROUND_FIGURES} for r in rounds]
        for key in ROUND_FIGURES:
            figures[key] = statistics.median(r[kind][key] for r in rounds)
        quiet = [r[kind]["quiet"]["p99_ms"] for r in rounds if r[kind]["quiet_seconds"]]
        if quiet:
            figures["quiet"] = dict(figures["quiet"], p99_ms=statistics.median(quiet))
        merged[kind] = figures
    return merged


def p99_ratio(mine: dict[str, Any], base: dict[str, Any]) -> tuple[float, list[float]]:
    """Proofroom's p99 over the baseline's: the median of the per-round ratios, and those."""
    pairs = list(zip(mine.get("rounds", [mine]), base.get("rounds", [base]), strict=True))
    ratios = [m["p99_ms"] / b["p99_ms"] for m, b in pairs]
    return statistics.median(ratios), ratios


async def join_once(url: str, pins_expected: int, limit_s: float = 30.0) -> dict[str, Any]:
    """Open a websocket, sync, and wait until every pin is in the doc; timings."""
    client = BenchClient(
        {"cid": -1, "url": url, "user_id": "late", "role": "viewer"},
        Recorder(),
        ClientEvents(),
        observe=False,
    )
    started = time.monotonic()
    await client.connect(limit_s)
    n_pins = len(client.pins)
    elapsed = time.monotonic() - started
    replies = sum(len(pin["thread"]) for pin in client.pins.values())
    await client.close()
    if n_pins < pins_expected:
        raise RuntimeError(f"late joiner saw {n_pins} pins, expected {pins_expected}")
    return {
        "seconds": elapsed,
        "pins": n_pins,
        "replies": replies,
        "doc_bytes": len(client.doc.get_update()),
    }


async def build_document(
    url: str, user_id: str, n_pins: int, n_replies: int, batch: int, rate: float
) -> float:
    """Write ``n_pins`` pins and ``n_replies`` replies through one client; seconds taken."""
    client = BenchClient(
        {"cid": 0, "url": url, "user_id": user_id, "role": "editor"},
        Recorder(),
        ClientEvents(),
        observe=False,
    )
    await client.connect(30.0)
    started = time.monotonic()
    per_pin, extra = divmod(n_replies, n_pins)
    now = time.time()

    def add_pins(first: int, last: int) -> None:
        for index in range(first, last):
            thread = [
                Map(
                    {
                        "id": f"r{index}-{k}",
                        "author": user_id,
                        "at": now + k,
                        "text": f"Reply {k} on pin {index}: the shadow under the cup is off.",
                    }
                )
                for k in range(per_pin + (1 if index < extra else 0))
            ]
            client.pins[f"pin-{index:05d}"] = Map(
                {
                    "x": float(index % IMAGE_SIZE),
                    "y": float(index * 7 % IMAGE_SIZE),
                    "author": user_id,
                    "text": f"Pin {index}: the highlight is blown out here.",
                    "status": "open",
                    "created_at": now,
                    "thread": Array(thread),
                }
            )

    for first in range(0, n_pins, batch):
        client.write(lambda first=first: add_pins(first, min(n_pins, first + batch)))
        await asyncio.sleep(1 / rate)
    elapsed = time.monotonic() - started
    await asyncio.sleep(0.5)
    if client.events.auth_denied or client.events.closes:
        raise RuntimeError(f"building the document: {client.events}")
    await client.close()
    return elapsed


async def late_join_flow(server: Server, opts: argparse.Namespace) -> dict[str, Any]:
    """Build the big document, then time fresh joins into the live room.

    The builder leaves when done; the first join after that is reported on its own (the
    server may have to load the room again). For the timed joins one viewer stays in the
    room, as in a meeting that is going on.
    """
    rooms, roles = [0, 0, 0], ["editor", "viewer", "viewer"]
    builder, joiner, holder_spec = await proofroom_specs(server, rooms, roles, False)
    build_s = await build_document(
        builder["url"],
        builder["user_id"],
        opts.late_pins,
        opts.late_replies,
        opts.late_batch,
        rate=10,
    )
    logger.info("built %d pins / %d replies in %.1fs", opts.late_pins, opts.late_replies, build_s)
    deadline = time.monotonic() + 20
    while True:  # the first join also waits for the server to have applied everything
        try:
            check = await join_once(joiner["url"], opts.late_pins)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    holder = BenchClient(holder_spec, Recorder(), ClientEvents(), observe=False)
    await holder.connect(30.0)
    try:
        joins = [await join_once(joiner["url"], opts.late_pins) for _ in range(opts.late_joins)]
    finally:
        await holder.close()
    seconds = sorted(j["seconds"] for j in joins)
    return {
        "median_ms": statistics.median(seconds) * 1000,
        "max_ms": seconds[-1] * 1000,
        "min_ms": seconds[0] * 1000,
        "first_join_ms": check["seconds"] * 1000,
        "pins": check["pins"],
        "replies": check["replies"],
        "doc_kib": check["doc_bytes"] / 1024,
        "build_s": build_s,
        "joins": len(joins),
        "server_rss_mib": server.rss() / 2**20,
    }


def late_join(opts: argparse.Namespace) -> dict[str, Any]:
    """Late-joiner sync time of a big document."""
    with running("proofroom", opts) as server:
        return asyncio.run(late_join_flow(server, opts))


def startup(opts: argparse.Namespace) -> dict[str, Any]:
    """``proofroom serve`` from process start to the first 200 from ``/healthz``."""
    seconds = []
    for _ in range(opts.startup_runs):
        started = time.monotonic()
        _, server = launch("proofroom", opts)
        try:
            wait_ready(server, poll_s=0.002)
            seconds.append(time.monotonic() - started)
        finally:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
    return {
        "median_s": statistics.median(seconds),
        "max_s": max(seconds),
        "min_s": min(seconds),
        "runs": len(seconds),
    }


def settled_rss(server: Server, wait: float, samples: int = 5, gap: float = 0.5) -> float:
    """Median RSS after letting the server settle for ``wait`` seconds, bytes."""
    time.sleep(wait)
    values = []
    for _ in range(samples):
        values.append(server.rss())
        time.sleep(gap)
    return statistics.median(values)


def idle_memory_once(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    """Server RSS with no connections vs with ``--idle-clients`` idle, synced ones."""
    rooms = room_layout(opts.idle_clients, opts.idle_rooms)
    roles = ["commenter"] * opts.idle_clients
    with running(kind, opts) as server:
        specs = client_specs(server, rooms, roles, opts)
        empty = settled_rss(server, wait=2.0)
        pool = WorkerPool(opts.workers)
        try:
            connect = connect_all(pool, specs, opts, observe=False)
            loaded = settled_rss(server, wait=3.0)
        finally:
            pool.close()
    connected = connect["connected"]
    per_conn = (loaded - empty) / max(1, connected) / 1024
    logger.info("%s: %.1f KiB per idle connection (%d connected)", kind, per_conn, connected)
    return {
        "kib_per_connection": per_conn,
        "rss_empty_mib": empty / 2**20,
        "rss_loaded_mib": loaded / 2**20,
        "connected": connected,
        "failed": connect["failed"],
        "closes": connect["closes"],
    }


# ---------------------------------------------------------------------------------------------
# Report


@dataclass
class Check:
    """One figure next to its target."""

    scenario: str
    figure: str
    value: float
    target: str
    passed: bool | None

    def row(self) -> str:
        """A line of the results table."""
        verdict = {True: "PASS", False: "FAIL", None: "-"}[self.passed]
        name = f"{self.scenario:<12} {self.figure:<42}"
        return f"{name} {self.value:>10.2f}  {self.target:<22} {verdict}"


def checks_for(results: dict[str, Any]) -> list[Check]:
    """Compare the measured figures with the project's targets.

    Latency also gets a "quiet" row: only messages sent in seconds when other processes on
    the machine used less than ``QUIET_OTHER_PCT`` of a core.
    """
    checks: list[Check] = []

    def info(scenario: str, figure: str, value: float) -> None:
        checks.append(Check(scenario, figure, value, "", None))

    def limit(scenario: str, figure: str, value: float, bound: float) -> None:
        checks.append(Check(scenario, figure, value, f"<= {bound:g}", value <= bound))

    def latency(scenario: str, kind: str, figures: dict[str, Any], bound: float | None) -> None:
        info(scenario, f"{kind} p50 ms", figures["p50_ms"])
        rows = [(f"{kind} p99 ms", figures["p99_ms"])]
        if figures["quiet_seconds"]:
            label = f"{kind} p99 ms, {figures['quiet_seconds']} quiet s"
            rows.append((label, figures["quiet"]["p99_ms"]))
        for label, value in rows:
            if bound is None:
                info(scenario, label, value)
            else:
                limit(scenario, label, value, bound)
        limit(scenario, f"{kind} messages lost", figures["lost"], 0)

    rooms = results.get("rooms", {})
    for kind, figures in rooms.items():
        latency("rooms", kind, figures, 25 if kind == "proofroom" else None)
        info("rooms", f"{kind} server CPU % of a core", figures["server_cpu_pct"])
        info("rooms", f"{kind} server CPU us per delivery", figures["server_cpu_us_per_delivery"])
        info("rooms", f"{kind} server RSS MiB", figures["server_rss_mib_end"])
    mine, base = rooms.get("proofroom"), rooms.get("baseline")
    if mine and base:
        ratio, ratios = p99_ratio(mine, base)
        label = "proofroom p99 / baseline p99"
        if len(ratios) > 1:
            label += f", median of {len(ratios)}"
        limit("rooms", label, ratio, 1.5)
        if mine["quiet_seconds"] and base["quiet_seconds"]:
            ratio = mine["quiet"]["p99_ms"] / base["quiet"]["p99_ms"]
            limit("rooms", "same, quiet seconds only", ratio, 1.5)
    for kind, figures in results.get("presenter", {}).items():
        latency("presenter", kind, figures, 50 if kind == "proofroom" else None)
    if "late_join" in results:
        late = results["late_join"]
        limit("late_join", "median open -> synced ms", late["median_ms"], 150)
        info("late_join", "max ms", late["max_ms"])
    if "startup" in results:
        limit("startup", "median start -> /healthz 200 s", results["startup"]["median_s"], 1.5)
    for kind, figures in results.get("idle_memory", {}).items():
        label, value = f"{kind} KiB per idle connection", figures["kib_per_connection"]
        if kind == "proofroom":
            limit("idle_memory", label, value, 60)
        else:
            info("idle_memory", label, value)
    return checks


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_server_metrics(samples: dict[str, float]) -> None:
    """A line of the server's own counters (whole run, warm-up and connects included)."""
    if not any(name.startswith("proofroom_") for name in samples):
        return
    name = "proofroom_broadcast_latency_seconds"
    count = samples.get(f"{name}_count", 0.0)
    mean_ms = 1000 * samples.get(f"{name}_sum", 0.0) / count if count else float("nan")
    counters = {
        key.removeprefix("proofroom_"): int(value)
        for key, value in samples.items()
        if key.endswith("_total")
    }
    print(
        f"  server /metrics: broadcast latency mean {mean_ms:.1f} ms, p99 <= "
        f"{1000 * histogram_quantile(samples, name, 0.99):g} ms over {int(count)}; {counters}"
    )


def print_report(results: dict[str, Any], opts: argparse.Namespace) -> list[Check]:
    """Print the results table and the details that explain it."""
    checks = checks_for(results)
    info = machine()
    print()
    print(
        f"machine: {info['cpus']} CPUs, {info['memory_gib']} GiB, Python {info['python']}; "
        f"load generator: {opts.workers} worker processes on the same machine"
    )
    print(f"{'scenario':<12} {'figure':<42} {'value':>10}  {'target':<22} result")
    for check in checks:
        print(check.row())
    rooms = results.get("rooms", {})
    if "proofroom" in rooms and "baseline" in rooms:
        _, ratios = p99_ratio(rooms["proofroom"], rooms["baseline"])
        if len(ratios) > 1:
            print(f"rooms: p99 ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    for name in ("rooms", "presenter"):
        for kind, figures in results.get(name, {}).items():
            print(
                f"{name}/{kind}: received {figures['received']}/{figures['expected']} "
                f"(dup {figures['duplicates']}), open at end {figures['open_at_end']}, "
                f"max {figures['max_ms']:.1f} ms, load CPU {figures['load_cpu_pct']:.0f}%, "
                f"machine CPU {figures['machine_cpu_pct']:.0f}% of {100 * info['cpus']}% "
                f"(other processes {figures['other_cpu_pct']:.0f}%), "
                f"load loop lag p99 {figures['load_loop_lag_p99_ms']:.1f} ms, "
                f"server RSS max {figures['server_rss_mib_max']:.0f} MiB, "
                f"closes {figures['closes'] or '{}'}, auth denied {figures['auth_denied'] or '{}'}"
            )
            if "rounds" in figures:
                each = "; ".join(
                    f"p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} ms CPU {r['server_cpu_pct']:.0f}%"
                    for r in figures["rounds"]
                )
                print(f"  rounds (figures above are their medians; details of the last): {each}")
            print(f"  p99 ms by second: {figures['p99_ms_by_second']}")
            print(f"  other processes, % of a core by second: {figures['other_cpu_pct_by_second']}")
            print_server_metrics(figures.get("server_metrics", {}))
            for error in figures["errors"]:
                print(f"  error: {error}")
    if "late_join" in results:
        late = results["late_join"]
        print(
            f"late_join: {late['pins']} pins, {late['replies']} replies, doc "
            f"{late['doc_kib']:.0f} KiB; {late['joins']} joins min {late['min_ms']:.1f} / "
            f"median {late['median_ms']:.1f} / max {late['max_ms']:.1f} ms; first join after "
            f"the builder left {late['first_join_ms']:.1f} ms; built in {late['build_s']:.1f}s"
        )
    if "startup" in results:
        start = results["startup"]
        print(
            f"startup: {start['runs']} runs, min {start['min_s']:.2f} / median "
            f"{start['median_s']:.2f} / max {start['max_s']:.2f} s"
        )
    for kind, figures in results.get("idle_memory", {}).items():
        print(
            f"idle_memory/{kind}: RSS {figures['rss_empty_mib']:.1f} MiB empty, "
            f"{figures['rss_loaded_mib']:.1f} MiB with {figures['connected']} idle clients "
            f"({figures['failed']} failed to connect, closes {figures['closes'] or '{}'})"
        )
    return checks


# ---------------------------------------------------------------------------------------------
# CLI

DEFAULTS = {
    "clients": (1000, 200),
    "rooms": (100, 20),
    "duration": (30.0, 6.0),
    "warmup": (5.0, 2.0),
    "drain": (3.0, 2.0),
    "quiet_wait": (60.0, 10.0),
    "presenter_clients": (300, 100),
    "presenter_duration": (20.0, 5.0),
    "late_joins": (10, 3),
    "repeat": (3, 1),
    "startup_runs": (5, 2),
    "idle_clients": (1000, 200),
    "idle_rooms": (10, 4),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; ``--quick`` changes the defaults of the sizes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS))
    add("--servers", default="proofroom,baseline", help="rooms/presenter/idle_memory against these")
    add("--quick", action="store_true", help="a ~2 minute smoke run: smaller loads")
    add("--workers", type=int, default=2, help="load-generator processes")
    add("--clients", type=int, help="rooms: clients in all (1000; quick 200)")
    add("--rooms", type=int, help="rooms: number of rooms (100; quick 20)")
    add("--duration", type=float, help="measured seconds per run (30; quick 6)")
    add(
        "--repeat",
        type=int,
        help="rooms: rounds against each server, alternating which goes first; figures are "
        "medians over the rounds (3; quick 1)",
    )
    add("--warmup", type=float, help="seconds of load before measuring (5; quick 2)")
    add("--drain", type=float, help="seconds to wait for stragglers (3; quick 2)")
    add("--connect-rate", type=float, default=200.0, help="new connections per second")
    add("--presenter-clients", type=int, help="presenter: room size (300; quick 100)")
    add("--presenter-hz", type=float, default=30.0)
    add("--presenter-duration", type=float, help="presenter: measured seconds (20; quick 5)")
    add("--late-pins", type=int, default=2000)
    add("--late-replies", type=int, default=10000)
    add("--late-batch", type=int, default=50, help="pins per update while building the doc")
    add("--late-joins", type=int, help="timed joins (10; quick 3)")
    add("--startup-runs", type=int, help="(5; quick 2)")
    add("--idle-clients", type=int, help="(1000; quick 200)")
    add("--idle-rooms", type=int, help="(10; quick 4)")
    add("--shared-tokens", action="store_true", help="one token per room and role, not per client")
    add(
        "--proofroom-cmd",
        help="command that stands for `proofroom` (e.g. to run it under a profiler); "
        "`serve --host --port --data` are appended",
    )
    add(
        "--baseline-ws",
        default="websockets-sansio",
        help="uvicorn ws implementation of the baseline",
    )
    add("--json", type=Path, help="also write the results here")
    add("--tmp", default=None, help="where server data dirs go (a fresh one per run)")
    add("--keep-data", action="store_true")
    add(
        "--quiet-wait",
        type=float,
        help="before each server start, wait up to this many seconds for an idle machine "
        "(60; quick 10; 0 = never wait)",
    )
    add("-v", "--verbose", action="store_true")
    opts = parser.parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(opts, name) is None:
            setattr(opts, name, quick if opts.quick else full)
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    opts.servers = [s.strip() for s in opts.servers.split(",") if s.strip()]
    unknown = set(opts.scenarios) - set(SCENARIOS) or set(opts.servers) - {"proofroom", "baseline"}
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    return opts


def run_scenarios(opts: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen scenarios; a scenario that fails is reported and the rest go on."""
    results: dict[str, Any] = {}
    plan: dict[str, Callable[[], Any]] = {
        "rooms": lambda: compare_rounds(opts.servers, rooms_once, opts),
        "presenter": lambda: compare(opts.servers, presenter_once, opts),
        "late_join": lambda: late_join(opts),
        "startup": lambda: startup(opts),
        "idle_memory": lambda: {k: idle_memory_once(k, opts) for k in opts.servers},
    }
    needs_proofroom = {"late_join", "startup"}
    for name in opts.scenarios:
        if name in needs_proofroom and "proofroom" not in opts.servers:
            continue
        logger.info("=== %s", name)
        started = time.monotonic()
        try:
            results[name] = plan[name]()
        except Exception as exc:  # one broken scenario should not hide the others' figures
            logger.exception("scenario %s failed", name)
            results.setdefault("failed", {})[name] = repr(exc)
        logger.info("=== %s took %.0fs", name, time.monotonic() - started)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write JSON; 1 if a target is missed."""
    opts = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if opts.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    results = run_scenarios(opts)
    checks = print_report(results, opts)
    for name, error in results.get("failed", {}).items():
        print(f"scenario {name} FAILED: {error}")
    print(f"total {time.monotonic() - started:.0f}s")
    if opts.json:
        payload = {
            "machine": machine(),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            "results": results,
            "checks": [c.__dict__ for c in checks],
        }
        opts.json.write_text(json.dumps(payload, indent=2, default=str))
    failed = results.get("failed") or any(c.passed is False for c in checks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
