"""The write guard's promise, checked at every place it could break (DESIGN.md section 4).

A write that breaks a rule never becomes part of another participant's document, the log,
a newcomer's sync or the document's size; its writer is told why; no honest concurrent edit
is lost because of it; presence is bounded per connection and per session.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from proofroom.client import SessionClient
from proofroom.shared import codec
from proofroom.shared.codec import write_var_bytes, write_var_uint
from proofroom.shared.protocol import CloseCode, MessageType, SyncStep
from proofroom.shared.updates import TYPE_ARRAY, TYPE_MAP, read_update

from .helpers import ReviewSession, RunningServer, pin_map, run_server

MARKER = "FORBIDDEN-4f1c"


def stranger_update(build: Any) -> bytes:
    """An update made in a document of its own (a new client id, starting at clock 0)."""
    doc: Doc[Any] = Doc()
    build(doc)
    return doc.get_update()


async def newcomer_sync(server: RunningServer, session_id: str, token: str) -> bytes:
    """The raw sync step 2 a newcomer with an empty document receives."""
    url = server.url.replace("http://", "ws://") + f"/ws/{session_id}?token={token}"
    async with connect(url, compression=None) as ws:
        await ws.send(codec.sync_step1(b"\x00"))
        while True:
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            kind, content = codec.parse_frame(frame, from_server=True)
            if kind is MessageType.SYNC and content.step is SyncStep.STEP2:
                return bytes(content.payload)


def stored_bytes(data: Path, session_id: str) -> bytes:
    """Everything the log holds for a session (snapshot and updates), concatenated."""
    with sqlite3.connect(data / "proofroom.sqlite3") as db:
        rows = db.execute(
            "SELECT data FROM doc_snapshots WHERE session_id = ?"
            " UNION ALL SELECT data FROM doc_updates WHERE session_id = ?",
            (session_id, session_id),
        ).fetchall()
    return b"".join(row[0] for row in rows)


async def assert_nowhere(
    server: RunningServer, session: ReviewSession, watcher: SessionClient, needle: bytes
) -> None:
    """The needle is in no other client's document, no newcomer's sync and not the log."""
    assert needle not in watcher.doc.get_update()
    assert needle not in await newcomer_sync(server, session.id, session.tokens["viewer"])
    assert needle not in stored_bytes(server.settings.data, session.id)


FORBIDDEN_SHAPES = {
    "unknown root": (
        lambda d: d.get("evil", type=Map).__setitem__("x", MARKER),
        "unknown document root 'evil'",
    ),
    "pins as an array": (
        lambda d: d.get("pins", type=Array).append(MARKER),
        "'pins' is a map",
    ),
    "pins as text": (
        lambda d: d.get("pins", type=Text).__iadd__(MARKER),
        "'pins' is a map",
    ),
    "layers as a map": (
        lambda d: d.get("layers", type=Map).__setitem__("x", MARKER),
        "'layers' is written by the server only",
    ),
    "a text inside a pin": (
        lambda d: d.get("pins", type=Map).__setitem__("p", Map({"t": Text(MARKER)})),
        "only maps and arrays",
    ),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN_SHAPES))
async def test_a_refused_shape_reaches_no_one_not_even_after_a_restart(
    tmp_path: Path, case: str
) -> None:
    build, reason = FORBIDDEN_SHAPES[case]
    data = tmp_path / "data"
    async with run_server(data) as server:
        session = await server.new_session()
        me = session.users["commenter"]
        async with (
            server.client(session.id, session.tokens["commenter"]) as attacker,
            server.client(session.id, session.tokens["viewer"]) as watcher,
        ):
            for _ in range(2):  # the second try is refused just like the first
                await attacker.send_raw(codec.sync_update(stranger_update(build)))
            await attacker.wait_for(lambda: len(attacker.denied) == 2)
            assert all(reason in why for why in attacker.denied), attacker.denied
            attacker.add_pin("honest", x=1, y=1, text="still works", author=me)
            await watcher.wait_for(lambda: "honest" in watcher.pins)
            await assert_nowhere(server, session, watcher, MARKER.encode())
            assert attacker.closed is None
    async with run_server(data) as server:
        # After a restart the session takes honest writes as before.
        async with (
            server.client(session.id, session.tokens["commenter"]) as writer,
            server.client(session.id, session.tokens["viewer"]) as watcher,
        ):
            writer.add_pin("after", x=2, y=2, text="after restart", author=me)
            await watcher.wait_for(lambda: "after" in watcher.pins)
            assert writer.denied == []
            await assert_nowhere(server, session, watcher, MARKER.encode())


async def test_refused_updates_do_not_count_toward_the_document_size(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with run_server(data, max_doc_bytes=200_000) as server:
        session = await server.new_session()
        me = session.users["commenter"]
        async with server.client(session.id, session.tokens["commenter"]) as attacker:
            big = "x" * 60_000  # too long for a pin's text: refused
            for i in range(10):  # 600 KB of refused content, 3x the limit
                update = stranger_update(
                    lambda d, i=i: d.get("pins", type=Map).__setitem__(
                        f"big{i}", pin_map(me, text=big)
                    )
                )
                await attacker.send_raw(codec.sync_update(update))
            await attacker.wait_for(lambda: len(attacker.denied) == 10)
            attacker.add_pin("small", x=1, y=1, text="fits", author=me)
            await attacker.wait_for(lambda: "small" in attacker.pins)
        size = len(stored_bytes(data, session.id))
        assert size < 5_000, size
    async with run_server(data, max_doc_bytes=200_000) as server:
        async with (
            server.client(session.id, session.tokens["commenter"]) as writer,
            server.client(session.id, session.tokens["viewer"]) as watcher,
        ):
            writer.add_pin("more", x=1, y=1, text="still room", author=me)
            await watcher.wait_for(lambda: "more" in watcher.pins)
            assert writer.closed is None
            assert len(await newcomer_sync(server, session.id, session.tokens["viewer"])) < 5_000


async def test_a_refused_deletion_loses_no_concurrent_reply(
    server: RunningServer, session: ReviewSession
) -> None:
    owner_id = session.users["editor"]
    # Three attackers (each connection may have 10 refusals in a burst), one honest writer.
    attackers = [
        server.client(session.id, (await server.join(session.links["commenter"], f"A{i}"))["token"])
        for i in range(3)
    ]
    async with (
        server.client(session.id, session.tokens["editor"]) as owner,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        for attacker in attackers:
            await attacker.connect()
        owner.add_pin("p", x=1, y=1, text="keep me", author=owner_id)
        rounds = 8
        for i in range(rounds):
            for attacker in attackers:
                await attacker.wait_for(lambda a=attacker: "p" in a.pins)
            # Every change leaves before anyone hears about the others'.
            for attacker in attackers:
                del attacker.pins["p"]
            owner.reply("p", f"c{i}", text=f"reply {i}", author=owner_id)
            for attacker in attackers:
                await attacker.wait_for(
                    lambda a=attacker, i=i: (
                        len(a.denied) == i + 1
                        and "p" in a.pins
                        and len(a.pins["p"]["thread"]) == i + 1
                    )
                )
        await watcher.wait_for(lambda: len(watcher.pins["p"]["thread"]) == rounds)
        assert [c["id"] for c in watcher.pins["p"]["thread"]] == [f"c{i}" for i in range(rounds)]
        for attacker in attackers:
            assert attacker.state() == watcher.state() == owner.state()
            assert attacker.closed is None
            await attacker.disconnect()
    async with server.client(session.id, session.tokens["viewer"]) as late:
        assert len(late.pins["p"]["thread"]) == rounds


async def test_refusals_past_the_rate_close_the_connection(
    server: RunningServer, session: ReviewSession
) -> None:
    async with server.client(session.id, session.tokens["commenter"]) as attacker:
        for _ in range(12):
            update = stranger_update(lambda d: d.get("evil", type=Map).__setitem__("x", 1))
            await attacker.send_raw(codec.sync_update(update))
        await attacker.wait_for(lambda: attacker.closed is not None)
        assert attacker.closed is not None and attacker.closed[0] == CloseCode.RATE_LIMITED
        assert len(attacker.denied) == 11


async def test_a_new_comments_edited_at_is_checked(
    server: RunningServer, session: ReviewSession
) -> None:
    me = session.users["commenter"]
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        a.add_pin("p", x=1, y=1, text="t", author=me)
        await watcher.wait_for(lambda: "p" in watcher.pins)
        a.pins["p"]["thread"].append(
            Map({"id": "c", "author": me, "text": "t", "at": 1.0, "edited_at": MARKER})
        )
        await a.wait_for(lambda: a.denied)
        assert "'edited_at' must be a time in seconds" in a.denied[0]
        await a.wait_for(lambda: "p" in a.pins and len(a.pins["p"]["thread"]) == 0)
        await assert_nowhere(server, session, watcher, MARKER.encode())


# -- a writer that cannot get back in sync ---------------------------------------------------


async def test_an_update_with_a_gap_closes_with_out_of_sync(
    server: RunningServer, session: ReviewSession
) -> None:
    me = session.users["commenter"]
    doc: Doc[Any] = Doc()
    pins = doc.get("pins", type=Map)
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    pins["a"] = pin_map(me)
    pins["b"] = pin_map(me, text=MARKER)
    del subscription
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        await a.send_raw(codec.sync_update(updates[1]))  # without the first
        await a.wait_for(lambda: a.closed is not None)
        assert a.closed is not None and a.closed[0] == CloseCode.OUT_OF_SYNC
        assert "out of sync" in a.closed[1]
        await assert_nowhere(server, session, watcher, MARKER.encode())


async def test_a_client_building_on_a_refused_change_is_closed_and_recovers(
    server: RunningServer, session: ReviewSession
) -> None:
    me, other = session.users["commenter"], session.users["editor"]
    async with server.client(session.id, session.tokens["viewer"]) as watcher:
        a = server.client(session.id, session.tokens["commenter"])
        await a.connect()
        # Two changes in a row: the first is refused, the second builds on it.
        a.pins["forged"] = pin_map(other)
        a.pins["forged"]["text"] = MARKER
        await a.wait_for(lambda: a.closed is not None)
        assert a.closed is not None and a.closed[0] == CloseCode.OUT_OF_SYNC
        # The client starts from a fresh copy on its next connect and writes as before.
        await a.connect()
        assert "forged" not in a.pins
        a.add_pin("mine", x=1, y=1, text="fine", author=me)
        await watcher.wait_for(lambda: "mine" in watcher.pins)
        await a.disconnect()
        await assert_nowhere(server, session, watcher, MARKER.encode())


async def test_a_step_two_repeating_a_refused_change_closes_with_out_of_sync(
    server: RunningServer, session: ReviewSession
) -> None:
    editor = session.users["editor"]
    async with server.client(session.id, session.tokens["editor"]) as owner:
        owner.add_pin("p", x=1, y=1, text="t", author=editor)
        await owner.wait_for(lambda: owner.synced.is_set())
        async with server.client(session.id, session.tokens["commenter"]) as probe:
            await probe.wait_for(lambda: "p" in probe.pins)
            copy: Doc[Any] = Doc()
            copy.apply_update(probe.doc.get_update())
        del copy.get("pins", type=Map)["p"]  # a deletion a stock Yjs client cannot undo
        url = server.url.replace("http://", "ws://")
        token = session.tokens["commenter"]
        async with connect(f"{url}/ws/{session.id}?token={token}", compression=None) as ws:
            while True:  # answer the server's step 1 with the copy's difference
                kind, content = codec.parse_frame(await ws.recv(), from_server=True)  # type: ignore[arg-type]
                if kind is MessageType.SYNC and content.step is SyncStep.STEP1:
                    await ws.send(codec.sync_step2(copy.get_update(content.payload)))
                    break
            reasons = []
            with contextlib.suppress(ConnectionClosed):
                async for frame in ws:
                    kind, content = codec.parse_frame(frame, from_server=True)  # type: ignore[arg-type]
                    if kind is MessageType.AUTH:
                        reasons.append(content)
            assert ws.close_code == CloseCode.OUT_OF_SYNC
            assert reasons and "pins are resolved, never replaced or deleted" in reasons[0]
        assert "p" in owner.pins


# -- malformed input --------------------------------------------------------------------------


def _deeply_nested_update(depth: int) -> bytes:
    """An update whose one value is an array nested ``depth`` deep (lib0 Any encoding)."""
    content = bytes([117, 1]) * depth + bytes([126])
    item = (
        bytes([0x28])  # ContentAny, with a parent key
        + write_var_uint(1)
        + write_var_bytes(b"pins")
        + write_var_bytes(b"k")
        + write_var_uint(1)
        + content
    )
    return (
        write_var_uint(1)
        + write_var_uint(1)
        + write_var_uint(99)
        + write_var_uint(0)
        + (item + write_var_uint(0))
    )


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(codec.sync_step1(b"\xff\xff\xff"), id="truncated state vector"),
        pytest.param(codec.sync_step1(b"\x01\x05\x05\x00\x00"), id="trailing state vector"),
        pytest.param(codec.sync_update(_deeply_nested_update(100_000)), id="nested 100,000 deep"),
        pytest.param(codec.sync_update(b"\x01\x01\x05\x00\x33"), id="unknown struct"),
        pytest.param(codec.sync_update(b"\x01\x05\x05"), id="truncated update"),
    ],
)
async def test_malformed_sync_messages_close_with_4400_and_harm_no_one(
    server: RunningServer, session: ReviewSession, frame: bytes
) -> None:
    me = session.users["commenter"]
    async with (
        server.client(session.id, session.tokens["commenter"]) as bad,
        server.client(session.id, session.tokens["editor"]) as good,
    ):
        await bad.send_raw(frame)
        await bad.wait_for(lambda: bad.closed is not None)
        assert bad.closed is not None and bad.closed[0] == CloseCode.BAD_MESSAGE, bad.closed
        good.add_pin("p", x=1, y=1, text="fine", author=session.users["editor"])
        async with server.client(session.id, session.tokens["commenter"]) as again:
            await again.wait_for(lambda: "p" in again.pins)
            again.add_pin("q", x=1, y=1, text="fine", author=me)
            await good.wait_for(lambda: "q" in good.pins)


# -- presence ---------------------------------------------------------------------------------


def _presence(entries: list[tuple[int, int, str]]) -> bytes:
    return codec.encode_awareness(entries)


async def test_presence_ids_per_connection_are_capped(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", max_presence_ids_per_connection=3) as server:
        session = await server.new_session()
        async with (
            server.client(session.id, session.tokens["commenter"]) as bad,
            server.client(session.id, session.tokens["viewer"]) as watcher,
        ):
            await bad.send_raw(_presence([(i, 1, '{"cursor":[1,2]}') for i in range(1, 4)]))
            await watcher.wait_for(lambda: len(watcher.peers) == 3)
            await bad.send_raw(_presence([(i, 1, '{"cursor":[1,2]}') for i in range(4, 200)]))
            await bad.wait_for(lambda: bad.closed is not None)
            assert bad.closed is not None and bad.closed[0] == CloseCode.PRESENCE_CLIENTS
            # Nothing of the refused message reached anyone; the owner's ids leave with it.
            await watcher.wait_for(lambda: len(watcher.peers) == 0)
            async with server.client(session.id, session.tokens["viewer"]) as newcomer:
                assert newcomer.peers == {}


async def test_presence_state_size_is_capped(server: RunningServer, session: ReviewSession) -> None:
    async with (
        server.client(session.id, session.tokens["commenter"]) as bad,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        huge = '{"junk":"' + "x" * 5000 + '"}'
        await bad.send_raw(_presence([(7, 1, huge)]))
        await bad.wait_for(lambda: bad.closed is not None)
        assert bad.closed is not None and bad.closed[0] == CloseCode.PRESENCE_STATE_TOO_LARGE
        await watcher.set_awareness({"cursor": [1, 1]})
        assert watcher.peers == {}


async def test_a_full_presence_table_refuses_the_newcomer_only(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", max_presence_ids_per_session=2) as server:
        session = await server.new_session()
        async with (
            server.client(session.id, session.tokens["commenter"]) as a,
            server.client(session.id, session.tokens["editor"]) as b,
            server.client(session.id, session.tokens["viewer"]) as c,
        ):
            await a.set_awareness({"cursor": [1, 1]})
            await b.set_awareness({"cursor": [2, 2]})
            await a.wait_for(lambda: len(a.peers) == 1)
            await c.set_awareness({"cursor": [3, 3]})
            await c.wait_for(lambda: c.closed is not None)
            assert c.closed is not None and c.closed[0] == CloseCode.PRESENCE_FULL
            await b.set_awareness({"cursor": [4, 4]})
            await a.wait_for(lambda: any(p.get("cursor") == [4, 4] for p in a.peers.values()))
            assert a.closed is None and b.closed is None


def _item_under(client: int, parent: tuple[int, int], key: str | None) -> bytes:
    """An update of one string value placed under a shared type by its id."""
    body = bytes([0x08 | (0x20 if key is not None else 0)])  # ContentAny, origin-less
    body += write_var_uint(0) + write_var_uint(parent[0]) + write_var_uint(parent[1])
    if key is not None:
        body += write_var_bytes(key.encode())
    body += write_var_uint(1) + bytes([119]) + write_var_bytes(MARKER.encode())
    return (
        write_var_uint(1)
        + write_var_uint(1)
        + write_var_uint(client)
        + write_var_uint(0)
        + (body + write_var_uint(0))
    )


async def test_nested_types_are_written_only_as_what_they_are(
    server: RunningServer, session: ReviewSession
) -> None:
    me = session.users["commenter"]
    maker: Doc[Any] = Doc()
    maker.get("pins", type=Map)["p"] = pin_map(me)
    made = maker.get_update()
    kinds = read_update(made).types
    pin_id = next(i for i, k in kinds.items() if k == TYPE_MAP)
    thread = next(i for i, k in kinds.items() if k == TYPE_ARRAY)
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        await a.send_raw(codec.sync_update(made))
        await watcher.wait_for(lambda: "p" in watcher.pins)
        await a.send_raw(codec.sync_update(_item_under(9001, pin_id, None)))
        await a.wait_for(lambda: len(a.denied) == 1)
        assert "a map written as an array" in a.denied[0]
        await a.send_raw(codec.sync_update(_item_under(9002, thread, "k")))
        await a.wait_for(lambda: len(a.denied) == 2)
        assert "an array written as a map" in a.denied[1]
        a.pins["p"]["text"] = "edited"
        await watcher.wait_for(lambda: watcher.pins["p"]["text"] == "edited")
        await assert_nowhere(server, session, watcher, MARKER.encode())
