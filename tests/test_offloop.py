"""Heavy work (image decode and encode, mask decode, log compaction) never runs on the loop.

Each test holds one piece of heavy work open in its worker thread, right after the real
work is done, until another room has completed a ping-pong of updates; the server and the
test share one event loop, so if that work ran on the loop nothing could move until the
hold timed out, and the test sees the hold end by timeout instead of by its release. The
order of events is checked, never a duration.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proofroom.server import images
from proofroom.server.review import masks
from proofroom.server.rooms import compaction
from proofroom.server.rooms.compaction import Compactor

from .helpers import ReviewSession, RunningServer, encode_png, png_bytes, run_server
from .review_steps import put_pin, upload_version, wait_for_pin

#: How long a hold waits for the test: reached only when the work blocked the loop.
HOLD_S = 30.0


class Hold:
    """Wraps a function so that, after running it, its thread waits for :meth:`release`."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._release = threading.Event()
        self.reached = asyncio.Event()
        #: Whether the hold ended by the test's release (True) or by timing out (False).
        self.released: bool | None = None
        self.events: list[str] = []
        #: Calls before :meth:`arm` (setting up the test) run through.
        self.armed = False

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def held(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            if self.armed and self.released is None:  # only the first call once armed
                self._loop.call_soon_threadsafe(self.reached.set)
                self.released = self._release.wait(HOLD_S)
            return result

        return held

    def release(self) -> None:
        self.events.append("released")
        self._release.set()


async def ping_pong(server: RunningServer, other: ReviewSession, hold: Hold) -> None:
    """Two participants of another room trade a pin each way while the hold is closed."""
    author_a, author_b = other.users["commenter"], other.users["editor"]
    async with (
        server.client(other.id, other.tokens["commenter"]) as a,
        server.client(other.id, other.tokens["editor"]) as b,
    ):
        await hold.reached.wait()
        a.add_pin("ping", x=1, y=1, text="ping", author=author_a)
        await b.wait_for(lambda: "ping" in b.pins)
        b.add_pin("pong", x=2, y=2, text="pong", author=author_b)
        await a.wait_for(lambda: "pong" in a.pins)
    hold.events.append("ping-pong")
    hold.release()


async def run_while_held(
    server: RunningServer, hold: Hold, heavy: Callable[[], Awaitable[Any]]
) -> Any:
    """Start ``heavy``, play the ping-pong in a new room, then let ``heavy`` finish."""
    other = await server.new_session(title="the other room")
    hold.armed = True

    async def job() -> Any:
        value = await heavy()
        hold.events.append("heavy returned")
        return value

    task = asyncio.create_task(job())
    try:
        await ping_pong(server, other, hold)
        value = await task
    finally:
        hold.release()
        await asyncio.gather(task, return_exceptions=True)
    assert hold.released is True, "the held work blocked the event loop"
    assert hold.events == ["ping-pong", "released", "heavy returned", "released"]
    return value


async def test_session_creation_decodes_off_the_loop(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = Hold()
    monkeypatch.setattr(images, "normalize_image", hold.wrap(images.normalize_image))
    created = await run_while_held(
        server, hold, lambda: server.admin.create_session(png_bytes(640, 480), title="big")
    )
    assert created["width"] == 640


async def test_version_upload_decodes_off_the_loop(
    server: RunningServer, session: ReviewSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = session.tokens["editor"]
    async with server.client(session.id, editor) as client:
        await put_pin(client, "p1", session.users["editor"], 1.0)
    await wait_for_pin(server, session.id, "p1")
    hold = Hold()
    monkeypatch.setattr(images, "normalize_image", hold.wrap(images.normalize_image))
    async with server.api(editor) as api:
        layer = await run_while_held(
            server, hold, lambda: upload_version(api, session.id, "p1", (10, 200, 10))
        )
    assert layer.startswith("l_up_")


async def test_a_fix_request_decodes_its_mask_off_the_loop(
    server: RunningServer, session: ReviewSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    editor = session.tokens["editor"]
    async with server.client(session.id, editor) as client:
        await put_pin(client, "p1", session.users["editor"], 1.0)
    await wait_for_pin(server, session.id, "p1")
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[10:20, 10:30] = 255
    url = "data:image/png;base64," + base64.b64encode(encode_png(mask)).decode()
    hold = Hold()
    monkeypatch.setattr(masks, "decode_mask_png", hold.wrap(masks.decode_mask_png))
    async with server.api(editor) as api:
        reply = await run_while_held(
            server,
            hold,
            lambda: api.json(
                "POST",
                f"/api/sessions/{session.id}/pins/p1/fix",
                json={"mask": url, "seed": 1, "variants": 1},
            ),
        )
    assert len(reply["jobs"]) == 1


async def log_rows(server: RunningServer, session_id: str) -> int:
    row = await server.services.db.fetchone(
        "SELECT count(*) FROM doc_updates WHERE session_id = ?", (session_id,)
    )
    assert row is not None
    return int(row[0])


async def snapshot_of(server: RunningServer, session_id: str) -> bytes | None:
    row = await server.services.db.fetchone(
        "SELECT data FROM doc_snapshots WHERE session_id = ?", (session_id,)
    )
    return bytes(row["data"]) if row else None


@pytest.mark.parametrize("path", ["thread", "process"])
async def test_compaction_merges_off_the_loop_and_loses_no_concurrent_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    data = tmp_path / "data"
    hold = Hold()
    hold.armed = True
    monkeypatch.setattr(Compactor, "_merge", hold.wrap(Compactor._merge))
    async with run_server(data, compact_after_updates=20) as server:
        compactor = server.services.rooms.compactor
        if path == "process":
            compactor.process_bytes = 0  # even this small document merges in a child
        session = await server.new_session()
        author = session.users["commenter"]
        first_snapshot = await snapshot_of(server, session.id)
        async with (
            server.client(session.id, session.tokens["commenter"]) as writer,
            server.client(session.id, session.tokens["viewer"]) as watcher,
        ):
            for i in range(20):  # one logged update each: the 20th starts a compaction
                writer.add_pin(f"p{i}", x=i, y=i, text=f"before {i}", author=author)
                await writer.flush()
            await watcher.wait_for(lambda: len(watcher.pins) == 20)

            await hold.reached.wait()
            merged = await log_rows(server, session.id)
            # Logged while the merge is held: new pins, and edits of pins being merged.
            for i in range(20, 30):
                writer.add_pin(f"p{i}", x=i, y=i, text=f"during {i}", author=author)
                await writer.flush()
            for i in range(0, 20, 4):
                writer.pins[f"p{i}"]["text"] = f"edited {i}"
                await writer.flush()
            await watcher.wait_for(
                lambda: len(watcher.pins) == 30 and watcher.pins["p16"]["text"] == "edited 16"
            )
            logged = await log_rows(server, session.id)
            assert await snapshot_of(server, session.id) == first_snapshot  # still merging
            hold.release()
            await asyncio.wait_for(server.services.rooms.rooms[session.id].drained(), HOLD_S)
            assert hold.released is True, "the merge blocked the event loop"
            # Exactly the merged rows were replaced; those logged meanwhile are the tail.
            assert await log_rows(server, session.id) == logged - merged
            assert await snapshot_of(server, session.id) != first_snapshot
            writer.pins["p1"]["text"] = "after"
            await writer.flush()
            await watcher.wait_for(lambda: watcher.pins["p1"]["text"] == "after")
            expected = watcher.state()
        if path == "process":
            assert compactor.process_merges == 1
        else:
            assert compactor.process_merges == 0
    async with run_server(data) as server:
        async with server.client(session.id, session.tokens["viewer"]) as reader:
            assert reader.state() == expected
    assert expected["pins"]["p0"]["text"] == "edited 0"
    assert expected["pins"]["p29"]["text"] == "during 29"
    assert len(expected["pins"]) == 30


async def test_a_compaction_in_one_room_does_not_stop_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = Hold()
    monkeypatch.setattr(compaction, "merge_updates", hold.wrap(compaction.merge_updates))
    async with run_server(tmp_path / "data", compact_after_updates=10) as server:
        session = await server.new_session(title="big")
        author = session.users["commenter"]

        async def compacting_room() -> None:
            async with server.client(session.id, session.tokens["commenter"]) as writer:
                for i in range(10):
                    writer.add_pin(f"p{i}", x=i, y=i, text=str(i), author=author)
                    await writer.flush()
                await hold.reached.wait()
                # The room counts as drained only once its merge and compaction settled.
                await asyncio.wait_for(server.services.rooms.rooms[session.id].drained(), HOLD_S)

        await run_while_held(server, hold, compacting_room)


async def test_a_failed_merge_keeps_the_log_and_the_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction, "_CHILD", "import sys; sys.exit('no merge today')")
    data = tmp_path / "data"
    async with run_server(data, compact_after_updates=5) as server:
        server.services.rooms.compactor.process_bytes = 0
        session = await server.new_session()
        author = session.users["commenter"]
        first_snapshot = await snapshot_of(server, session.id)
        async with server.client(session.id, session.tokens["commenter"]) as writer:
            for i in range(12):  # every commit from the 5th on tries, and fails, to compact
                writer.add_pin(f"p{i}", x=i, y=i, text=str(i), author=author)
                await writer.flush()
            async with server.client(session.id, session.tokens["viewer"]) as watcher:
                await watcher.wait_for(lambda: len(watcher.pins) == 12)
                expected = watcher.state()
            await asyncio.wait_for(server.services.rooms.rooms[session.id].drained(), HOLD_S)
        assert await snapshot_of(server, session.id) == first_snapshot
        assert await log_rows(server, session.id) == 12
        assert server.services.rooms.compactor.process_merges == 0
    async with run_server(data) as server:
        async with server.client(session.id, session.tokens["viewer"]) as reader:
            assert reader.state() == expected
