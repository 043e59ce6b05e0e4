"""Durable before visible: kill -9 the real server mid-stream and lose nothing anyone saw.

Writers (a person on each commenter, editor, approver and owner link: four users) each add
pins, reply on their own pin and rewrite its text, a few updates per 10 ms. Two viewers
record every pin id, comment id and text value the server broadcast to them. The server
process is SIGKILLed at some point of the stream, restarted on the same data directory
(on a new port), and a fresh client joins: everything a viewer saw must be there, because
the server only broadcasts an update after its commit. Then the writers (which kept editing
offline) and the viewers reconnect and everyone converges to one state that holds every
write of every writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Array, ArrayEvent, Doc, Map, MapEvent, merge_updates

from proofroom.client import ApiClient, SessionClient

from .helpers import ADMIN_TOKEN, join_session, png_bytes
from .procs import ServerProcess

pytestmark = pytest.mark.slow

WRITER_ROLES = ("commenter", "editor", "approver", "owner")
#: Exit codes of a clean shutdown on SIGTERM: uvicorn shuts down, then re-raises the signal.
GRACEFUL = (0, -signal.SIGTERM)
#: Generous limits: this test is about durability, not about the rate limiter.
FAST = {"PROOFROOM_UPDATES_PER_SECOND": "100000", "PROOFROOM_UPDATES_BURST": "100000"}


# -- helpers ---------------------------------------------------------------------------------


async def eventually(
    predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` (bounded) until it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


def text_counter(text: str) -> int:
    """``"w2:117"`` -> 117 (main-pin texts carry a per-writer increasing counter)."""
    return int(text.rsplit(":", 1)[1])


def doc_json(update: bytes) -> dict[str, Any]:
    """The document ``update`` describes, as plain JSON."""
    doc: Doc[Any] = Doc()
    roots = {
        "meta": doc.get("meta", type=Map),
        "pins": doc.get("pins", type=Map),
        "layers": doc.get("layers", type=Array),
        "jobs": doc.get("jobs", type=Map),
    }
    doc.apply_update(update)
    return {name: root.to_py() for name, root in roots.items()}


def comment_ids(state: dict[str, Any]) -> set[str]:
    return {c["id"] for pin in state["pins"].values() for c in pin.get("thread", [])}


def reconnect_url(client: SessionClient, new_base: str) -> None:
    """Point a client at the restarted server (same session and token, new port)."""
    client.url = str(httpx.URL(client.url).copy_with(port=httpx.URL(new_base).port))


@dataclass
class Writer:
    """One participant writing its own pins, replies and main-pin text in a loop."""

    name: str
    user: str
    client: SessionClient
    main_pin: str = ""
    pins: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    last_text: str = ""
    steps: int = 0

    def start(self) -> None:
        self.main_pin = f"{self.name}-main"
        self.last_text = f"{self.name}:0"
        self.client.add_pin(self.main_pin, x=1, y=1, text=self.last_text, author=self.user)
        self.pins.append(self.main_pin)

    def step(self) -> None:
        self.steps += 1
        i = self.steps
        if i % 3 == 0:
            pin_id = f"{self.name}-p{i}"
            self.client.add_pin(pin_id, x=i % 64, y=i % 48, text=f"pin {i}", author=self.user)
            self.pins.append(pin_id)
        elif i % 3 == 1:
            comment_id = f"{self.name}-c{i}"
            self.client.reply(self.main_pin, comment_id, text=f"reply {i}", author=self.user)
            self.comments.append(comment_id)
        else:
            self.last_text = f"{self.name}:{i}"
            self.client.pins[self.main_pin]["text"] = self.last_text

    async def run(self, stop: asyncio.Event, burst: int, pause: float) -> None:
        # The pause only paces the load (a few updates per 10 ms); nothing waits on it.
        while not stop.is_set():
            for _ in range(burst):
                self.step()
            await asyncio.sleep(pause)


class Observer:
    """A viewer that records every pin id, comment id and text it was sent."""

    def __init__(self, client: SessionClient) -> None:
        self.client = client
        self.events = 0
        self.pin_ids: set[str] = set()
        self.comment_ids: set[str] = set()
        #: Main-pin id -> highest text counter seen.
        self.max_text: dict[str, int] = {}
        self.errors: list[str] = []
        #: (events, action): run ``action`` (once) as soon as that many changes arrived.
        self.trigger: tuple[int, Callable[[], None]] | None = None
        self._sub = client.pins.observe_deep(self._on_change)

    def _seen_text(self, pin_id: str, text: Any) -> None:
        if pin_id.endswith("-main") and isinstance(text, str):
            self.max_text[pin_id] = max(self.max_text.get(pin_id, -1), text_counter(text))

    def _on_change(self, events: list[Any]) -> None:
        try:
            self.events += 1
            for event in events:
                path = list(event.path)
                if isinstance(event, MapEvent) and not path:
                    for pin_id, change in event.keys.items():
                        if change["action"] in ("add", "update"):
                            pin = change["newValue"]
                            self.pin_ids.add(pin_id)
                            self._seen_text(pin_id, pin.get("text"))
                            for comment in pin.get("thread", []):
                                self.comment_ids.add(comment.get("id"))
                elif isinstance(event, MapEvent) and len(path) == 1:
                    change = event.keys.get("text")
                    if change is not None and change["action"] != "delete":
                        self._seen_text(str(path[0]), change["newValue"])
                elif isinstance(event, ArrayEvent) and len(path) == 2:
                    for op in event.delta:
                        for comment in op.get("insert", ()):
                            self.comment_ids.add(comment.get("id"))
        except Exception as exc:  # never break the client's read loop; report it instead
            self.errors.append(repr(exc))
        if self.trigger is not None and self.events >= self.trigger[0]:
            action, self.trigger = self.trigger[1], None
            action()


@dataclass
class Room:
    session_id: str
    writers: list[Writer]
    observers: list[Observer]
    viewer_token: str

    @property
    def clients(self) -> list[SessionClient]:
        return [w.client for w in self.writers] + [o.client for o in self.observers]


async def open_room(url: str) -> Room:
    """A session with four writers (distinct users) and two viewers, all connected."""
    async with ApiClient(url, ADMIN_TOKEN) as admin:
        created = await admin.create_session(png_bytes(64, 48), title="crash")
        sid = created["id"]
        tokens = (await join_session(url, created)).tokens
        second_viewer = (await admin.create_invite(sid, "viewer", "Watcher"))["token"]
    writers = []
    for n, role in enumerate(WRITER_ROLES):
        async with ApiClient(url, tokens[role]) as api:
            me = await api.whoami()
        assert me["role"] == role
        writers.append(Writer(f"w{n}", me["user_id"], SessionClient(url, sid, tokens[role])))
    assert len({w.user for w in writers}) == len(writers)
    observers = [Observer(SessionClient(url, sid, t)) for t in (tokens["viewer"], second_viewer)]
    room = Room(sid, writers, observers, tokens["viewer"])
    for client in room.clients:
        await client.connect()
    return room


async def close_room(room: Room) -> None:
    for client in room.clients:
        with contextlib.suppress(Exception):
            await client.disconnect()


def check_nothing_seen_was_lost(
    room: Room, restored: dict[str, Any], restored_update: bytes
) -> None:
    """Every update any viewer was sent before the kill is in the restored document."""
    for obs in room.observers:
        assert not obs.errors
        missing_pins = obs.pin_ids - restored["pins"].keys()
        assert not missing_pins, f"pins broadcast before the kill but lost: {sorted(missing_pins)}"
        missing_comments = obs.comment_ids - comment_ids(restored)
        assert not missing_comments, f"comments broadcast but lost: {sorted(missing_comments)}"
        for pin_id, seen in obs.max_text.items():
            kept = text_counter(restored["pins"][pin_id]["text"])
            assert kept >= seen, f"{pin_id}: text #{seen} was broadcast, restored #{kept}"
        # The strongest form: merging everything the viewer holds adds nothing.
        merged = merge_updates(restored_update, obs.client.doc.get_update())
        assert doc_json(merged) == doc_json(restored_update)


async def reconnect_and_converge(room: Room, url: str, fresh: SessionClient) -> dict[str, Any]:
    """Reconnect everyone to ``url``; wait for one state that holds every write."""
    for client in room.clients:
        await client.disconnect()
        reconnect_url(client, url)
        await client.connect()
    everyone = [*room.clients, fresh]

    def converged() -> bool:
        first = fresh.state()
        return all(c.state() == first for c in everyone)

    await eventually(converged, what="convergence after reconnecting")
    final = fresh.state()
    for w in room.writers:
        assert set(w.pins) <= final["pins"].keys(), f"{w.name} lost pins"
        assert set(w.comments) <= comment_ids(final), f"{w.name} lost comments"
        assert final["pins"][w.main_pin]["text"] == w.last_text
        assert not w.client.denied, w.client.denied
    return final


# -- the tests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    #: Kill once a viewer has received this many more pin changes.
    after_events: int
    #: PROOFROOM_COMPACT_AFTER_UPDATES: small values keep compactions in flight.
    compact_after: int
    #: Updates each writer makes back to back before yielding.
    burst: int


KILL_POINTS = {
    "early": KillPoint(after_events=5, compact_after=500, burst=1),
    "while-compacting": KillPoint(after_events=120, compact_after=10, burst=1),
    "mid-burst": KillPoint(after_events=60, compact_after=40, burst=20),
}
#: Kill/restart cycles per test, on the same data directory and the same clients. A kill
#: lands between a commit and its broadcast only sometimes; several raise the odds that a
#: broadcast-before-commit regression is caught.
CYCLES = 3


async def crash_cycle(
    room: Room, server: ServerProcess, successor: ServerProcess, point: KillPoint
) -> None:
    """Write, SIGKILL ``server`` mid-stream, restart on ``successor``, check, reconnect."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(w.run(stop, point.burst, 0.003 * point.burst)) for w in room.writers
    ]
    fresh = SessionClient(successor.url or server.url, room.session_id, room.viewer_token)
    try:
        # Kill from inside the viewer's observer: as close as a client can get to the moment
        # a broadcast arrived.
        watcher = room.observers[0]
        watcher.trigger = (watcher.events + point.after_events, server.send_kill)
        await watcher.client.wait_for(lambda: watcher.trigger is None, timeout=30)
        assert server.kill() == -signal.SIGKILL
        await eventually(
            lambda: all(c.closed is not None for c in room.clients),
            what="every client noticing the crash",
        )
        # The writers keep editing offline for a while; then everyone stops.
        offline_from = [w.steps for w in room.writers]
        await eventually(
            lambda: all(w.steps >= s + 10 for w, s in zip(room.writers, offline_from, strict=True)),
            what="offline edits",
        )
        stop.set()
        await asyncio.gather(*tasks)
        assert all(o.pin_ids for o in room.observers), "the viewers saw nothing at all"

        await successor.astart()
        reconnect_url(fresh, successor.url)
        await fresh.connect()
        restored = fresh.state()
        assert restored["meta"]["title"] == "crash"
        check_nothing_seen_was_lost(room, restored, fresh.doc.get_update())
        await reconnect_and_converge(room, successor.url, fresh)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await fresh.disconnect()


@pytest.mark.parametrize("point", list(KILL_POINTS.values()), ids=list(KILL_POINTS))
async def test_kill_9_loses_nothing_that_was_broadcast(tmp_path: Path, point: KillPoint) -> None:
    data = tmp_path / "data"
    env = {**FAST, "PROOFROOM_COMPACT_AFTER_UPDATES": str(point.compact_after)}
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(ServerProcess(data, env=env)) for _ in range(CYCLES + 1)]
        await servers[0].astart()
        room = await open_room(servers[0].url)
        try:
            for w in room.writers:
                w.start()
            for server, successor in itertools.pairwise(servers):
                await crash_cycle(room, server, successor, point)
        finally:
            await close_room(room)
        last = servers[-1]
        assert last.terminate() in GRACEFUL
        assert "Traceback" not in last.output(), last.output()


async def test_graceful_restart_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServerProcess(data, env=FAST) as first, ServerProcess(data, env=FAST) as second:
        await first.astart()
        room = await open_room(first.url)
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        fresh = None
        try:
            for w in room.writers:
                w.start()
            tasks = [asyncio.create_task(w.run(stop, 1, 0.003)) for w in room.writers]
            watcher = room.observers[0]
            await watcher.client.wait_for(lambda: watcher.events >= 100)

            # SIGTERM while the writers are still writing: a clean, bounded shutdown.
            assert await asyncio.to_thread(first.terminate, 15.0) in GRACEFUL
            await eventually(
                lambda: all(c.closed is not None for c in room.clients),
                what="every client seeing the shutdown",
            )
            stop.set()
            await asyncio.gather(*tasks)
            assert "Traceback" not in first.output(), first.output()

            await second.astart()
            fresh = SessionClient(second.url, room.session_id, room.viewer_token)
            await fresh.connect()
            check_nothing_seen_was_lost(room, fresh.state(), fresh.doc.get_update())
            await reconnect_and_converge(room, second.url, fresh)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await close_room(room)
            if fresh is not None:
                await fresh.disconnect()
        assert second.terminate() in GRACEFUL


async def test_graceful_restart_of_an_idle_session_restores_it_exactly(tmp_path: Path) -> None:
    """Every write acknowledged (seen by a viewer) before SIGTERM: the restart is exact."""
    data = tmp_path / "data"
    with ServerProcess(data, env=FAST) as first, ServerProcess(data, env=FAST) as second:
        await first.astart()
        room = await open_room(first.url)
        fresh = None
        try:
            for w in room.writers:
                w.start()
                for _ in range(30):
                    w.step()
            expected = room.writers[0].client.state()
            expected["pins"] = {}
            for w in room.writers:  # each writer's own pins, as it wrote them
                own = w.client.state()["pins"]
                expected["pins"].update({pin_id: own[pin_id] for pin_id in w.pins})
            for obs in room.observers:
                await obs.client.wait_for(lambda o=obs: o.client.state() == expected)
            assert await asyncio.to_thread(first.terminate, 15.0) in GRACEFUL

            await second.astart()
            fresh = SessionClient(second.url, room.session_id, room.viewer_token)
            await fresh.connect()
            assert fresh.state() == expected
        finally:
            await close_room(room)
            if fresh is not None:
                await fresh.disconnect()
        assert second.terminate() in GRACEFUL
