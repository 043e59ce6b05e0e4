"""Live sync through the real server: sync, presence, persistence, and every bad frame."""

from __future__ import annotations

from pathlib import Path

import pytest
from pycrdt import Array, Doc, Map

from proofroom.shared import codec
from proofroom.shared.protocol import CloseCode

from .helpers import PEOPLE, ReviewSession, RunningServer, pin_map, run_server


async def test_late_joiner_gets_full_state_at_once(
    server: RunningServer, session: ReviewSession
) -> None:
    author = session.users["editor"]
    async with server.client(session.id, session.tokens["editor"]) as writer:
        with writer.doc.transaction():
            for i in range(200):
                writer.add_pin(f"p{i}", x=i % 64, y=i % 48, text=f"pin {i}", author=author)
        for i in range(200):
            writer.reply(f"p{i}", f"c{i}", text="reply", author=author)
        async with server.client(session.id, session.tokens["viewer"]) as probe:
            await probe.wait_for(
                lambda: (
                    len(probe.pins) == 200
                    and all(len(probe.pins[f"p{i}"]["thread"]) == 1 for i in range(200))
                )
            )
        async with server.client(session.id, session.tokens["viewer"]) as late:
            # Synced means the state arrived in the join's sync step 2.
            assert late.state() == writer.state()


async def test_awareness_is_relayed_stamped_and_cleared(
    server: RunningServer, session: ReviewSession
) -> None:
    async with server.client(session.id, session.tokens["viewer"]) as watcher:
        speaker = server.client(session.id, session.tokens["commenter"])
        await speaker.connect()
        await speaker.set_awareness(
            {"user": {"id": "someone-else", "name": "Ana", "role": "owner"}, "cursor": [10, 20]}
        )
        await watcher.wait_for(lambda: len(watcher.peers) == 1)
        state = next(iter(watcher.peers.values()))
        assert state["cursor"] == [10, 20]
        # The server stamps who is really behind the token, the name they joined with too.
        assert state["user"] == {
            "id": session.users["commenter"],
            "name": PEOPLE["commenter"],
            "role": "commenter",
        }
        async with server.client(session.id, session.tokens["editor"]) as newcomer:
            await newcomer.wait_for(lambda: len(newcomer.peers) >= 1)
        await speaker.disconnect()
        await watcher.wait_for(lambda: not watcher.peers)


async def test_restart_keeps_every_acknowledged_update(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with run_server(data, compact_after_updates=7) as server:
        session = await server.new_session()
        author = session.users["commenter"]
        async with (
            server.client(session.id, session.tokens["commenter"]) as a,
            server.client(session.id, session.tokens["viewer"]) as b,
        ):
            for i in range(30):
                a.add_pin(f"p{i}", x=1, y=1, text=str(i), author=author)
            a.pins["p3"]["text"] = "edited"
            await b.wait_for(lambda: len(b.pins) == 30 and b.pins["p3"]["text"] == "edited")
            expected = b.state()
    async with run_server(data) as server:
        async with server.client(session.id, session.tokens["viewer"]) as c:
            assert c.state() == expected


async def test_offline_edits_merge_on_reconnect(
    server: RunningServer, session: ReviewSession
) -> None:
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["editor"]) as b,
    ):
        await a.disconnect()
        a.add_pin("offline", x=1, y=2, text="written offline", author=session.users["commenter"])
        b.add_pin("online", x=3, y=4, text="written online", author=session.users["editor"])
        await a.connect()
        await a.wait_for(lambda: "online" in a.pins)
        await b.wait_for(lambda: "offline" in b.pins)
        assert a.state() == b.state()


# -- the write guard ----------------------------------------------------------------------


@pytest.mark.parametrize("root", ["meta", "layers", "jobs"])
async def test_server_roots_are_reverted_for_everyone(
    server: RunningServer, session: ReviewSession, root: str
) -> None:
    async with (
        server.client(session.id, session.tokens["owner"]) as a,
        server.client(session.id, session.tokens["viewer"]) as b,
    ):
        before = b.state()
        if root == "meta":
            a.meta["title"] = "hijacked"
        elif root == "layers":
            a.layers.append(Map({"id": "fake", "state": "approved"}))
        else:
            a.jobs["j1"] = Map({"status": "done"})
        await a.wait_for(lambda: a.denied and a.state() == before)
        assert f"'{root}' is written by the server only" in a.denied[0]
        # b gets the write and its revert in one message: it never holds the forbidden state.
        a.pins["ok"] = Map(
            {
                "x": 1,
                "y": 1,
                "author": session.users["owner"],
                "text": "t",
                "status": "open",
                "created_at": 1.0,
                "thread": Array(),
            }
        )
        await b.wait_for(lambda: "ok" in b.pins)
        assert {k: v for k, v in b.state().items() if k != "pins"} == {
            k: v for k, v in before.items() if k != "pins"
        }


@pytest.mark.parametrize(
    "case",
    [
        "spoofed_author",
        "bad_status",
        "server_field",
        "outside_image",
        "huge_text",
        "missing_field",
        "spoofed_reply",
    ],
)
async def test_invalid_new_pins_are_reverted(
    server: RunningServer, session: ReviewSession, case: str
) -> None:
    me, other = session.users["commenter"], session.users["editor"]
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["viewer"]) as b,
    ):
        if case == "spoofed_author":
            a.pins["p"] = pin_map(other)
        elif case == "bad_status":
            a.pins["p"] = pin_map(me, status="banana")
        elif case == "server_field":
            a.pins["p"] = pin_map(me, layers=["l1"])
        elif case == "outside_image":
            a.pins["p"] = pin_map(me, x=10_000)
        elif case == "huge_text":
            a.pins["p"] = pin_map(me, text="x" * 20_000)
        elif case == "missing_field":
            a.pins["p"] = Map({"x": 1, "y": 1, "author": me})
        else:
            a.pins["p"] = pin_map(
                me, thread=Array([Map({"id": "c", "author": other, "text": "t", "at": 1.0})])
            )
        await a.wait_for(lambda: a.denied and "p" not in a.pins)
        a.add_pin("good", x=1, y=1, text="fine", author=me)
        await b.wait_for(lambda: "good" in b.pins)
        assert "p" not in b.pins


async def test_pins_and_comments_are_edited_only_by_their_authors(
    server: RunningServer, session: ReviewSession
) -> None:
    commenter, editor = session.users["commenter"], session.users["editor"]
    async with (
        server.client(session.id, session.tokens["commenter"]) as a,
        server.client(session.id, session.tokens["editor"]) as b,
    ):
        a.add_pin("p", x=1, y=1, text="mine", author=commenter)
        await b.wait_for(lambda: "p" in b.pins)
        # Anyone who may comment replies to anyone's pin.
        b.reply("p", "c1", text="a reply", author=editor)
        await a.wait_for(lambda: len(a.pins["p"]["thread"]) == 1)
        # Editing someone else's pin or comment is reverted.
        b.pins["p"]["text"] = "not yours"
        await b.wait_for(lambda: len(b.denied) == 1 and b.pins["p"]["text"] == "mine")
        a.pins["p"]["thread"][0]["text"] = "not yours either"
        await a.wait_for(
            lambda: len(a.denied) == 1 and a.pins["p"]["thread"][0]["text"] == "a reply"
        )
        # Removing pins or comments is never allowed; authors resolve or blank them.
        del a.pins["p"]
        await a.wait_for(lambda: len(a.denied) == 2 and "p" in a.pins)
        # Authors edit, resolve and reopen their own.
        a.pins["p"]["text"] = "mine, edited"
        a.pins["p"]["status"] = "resolved"
        b.pins["p"]["thread"][0]["deleted"] = True
        await b.wait_for(
            lambda: b.pins["p"]["status"] == "resolved" and b.pins["p"]["text"] == "mine, edited"
        )
        await a.wait_for(lambda: a.pins["p"]["thread"][0].get("deleted") is True)
        a.pins["p"]["status"] = "banana"
        await a.wait_for(lambda: len(a.denied) == 3 and a.pins["p"]["status"] == "resolved")
        assert a.state() == b.state()


async def test_viewer_updates_are_refused(server: RunningServer, session: ReviewSession) -> None:
    async with (
        server.client(session.id, session.tokens["viewer"]) as viewer,
        server.client(session.id, session.tokens["editor"]) as editor,
    ):
        viewer.pins["v"] = pin_map(session.users["viewer"])
        await viewer.wait_for(lambda: viewer.denied)
        assert "read-only" in viewer.denied[0]
        editor.add_pin("e", x=1, y=1, text="t", author=session.users["editor"])
        await viewer.wait_for(lambda: "e" in viewer.pins)
        assert "v" not in editor.pins


# -- bad frames and limits ----------------------------------------------------------------


BAD_FRAMES = {
    "unknown_type": b"\x09\x00",
    "unknown_sync_step": b"\x00\x07\x00",
    "truncated_sync": b"\x00\x02\x10abc",
    "truncated_varuint": b"\x00\x02\xff",
    "empty": b"",
    "client_auth": codec.permission_denied("I say so"),
    "awareness_not_json": codec.encode_awareness([(1, 1, "{nope")]),
    "awareness_not_object": codec.encode_awareness([(1, 1, "[1,2]")]),
    "text_frame": "hello",
    "garbage_update": codec.sync_update(b"\x01\x02\x03"),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_malformed_frames_close_only_their_sender(
    server: RunningServer, session: ReviewSession, name: str
) -> None:
    async with (
        server.client(session.id, session.tokens["editor"]) as bad,
        server.client(session.id, session.tokens["commenter"]) as good,
        server.client(session.id, session.tokens["viewer"]) as other,
    ):
        good.add_pin("before", x=1, y=1, text="t", author=session.users["commenter"])
        await other.wait_for(lambda: "before" in other.pins)
        await bad.send_raw(BAD_FRAMES[name])
        await bad.wait_for(lambda: bad.closed is not None)
        assert bad.closed is not None and bad.closed[0] == CloseCode.BAD_MESSAGE
        good.add_pin("after", x=1, y=1, text="t", author=session.users["commenter"])
        await other.wait_for(lambda: "after" in other.pins)
    async with server.client(session.id, session.tokens["viewer"]) as late:
        assert {"before", "after"} <= set(late.pins.keys())


async def test_oversize_frame_is_closed_with_1009(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", max_frame_bytes=64 * 1024) as server:
        session = await server.new_session()
        async with (
            server.client(session.id, session.tokens["editor"]) as big,
            server.client(session.id, session.tokens["viewer"]) as other,
        ):
            await big.send_raw(codec.sync_update(b"\x00" * (128 * 1024)))
            await big.wait_for(lambda: big.closed is not None)
            assert big.closed is not None and big.closed[0] == CloseCode.MESSAGE_TOO_BIG
            assert other.connected


async def test_update_flood_is_rate_limited(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", updates_per_second=20, updates_burst=50) as server:
        session = await server.new_session()
        me = session.users["commenter"]
        async with (
            server.client(session.id, session.tokens["commenter"]) as flood,
            server.client(session.id, session.tokens["viewer"]) as other,
        ):
            for i in range(500):
                flood.pins[f"p{i}"] = pin_map(me)
                if flood.closed is not None:
                    break
                await flood.flush()
            await flood.wait_for(lambda: flood.closed is not None)
            assert flood.closed is not None and flood.closed[0] == CloseCode.RATE_LIMITED
            assert other.connected
            # The burst allowance went through before the cut.
            await other.wait_for(lambda: len(other.pins) >= 45)
            seen = set(other.pins.keys())
        # What the server broadcast before the cut is kept.
        async with server.client(session.id, session.tokens["viewer"]) as late:
            assert seen <= set(late.pins.keys())


async def test_document_size_limit(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", max_doc_bytes=20_000) as server:
        session = await server.new_session()
        me = session.users["commenter"]
        async with server.client(session.id, session.tokens["commenter"]) as a:
            a.add_pin("small", x=1, y=1, text="ok", author=me)
            a.add_pin("big", x=1, y=1, text="x" * 9_000, author=me)
            a.add_pin("bigger", x=1, y=1, text="y" * 9_000, author=me)
            a.add_pin("too much", x=1, y=1, text="z" * 9_000, author=me)
            await a.wait_for(lambda: a.closed is not None)
            assert a.closed is not None and a.closed[0] == CloseCode.DOC_TOO_LARGE
        async with server.client(session.id, session.tokens["viewer"]) as late:
            assert "small" in late.pins and "too much" not in late.pins


async def test_connections_per_session_limit(tmp_path: Path) -> None:
    async with run_server(tmp_path / "d", max_connections_per_session=2) as server:
        session = await server.new_session()
        async with (
            server.client(session.id, session.tokens["viewer"]),
            server.client(session.id, session.tokens["viewer"]),
        ):
            third = server.client(session.id, session.tokens["viewer"])
            with pytest.raises(ConnectionError):
                await third.connect()
            assert third.closed is not None and third.closed[0] == CloseCode.ROOM_FULL


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("", CloseCode.UNAUTHORIZED),
        ("pr_wrong", CloseCode.UNAUTHORIZED),
        ("other-session", CloseCode.FORBIDDEN),
    ],
)
async def test_bad_tokens_are_refused(
    server: RunningServer, session: ReviewSession, token: str, code: int
) -> None:
    if token == "other-session":
        token = (await server.new_session()).tokens["owner"]
    client = server.client(session.id, token)
    with pytest.raises(ConnectionError):
        await client.connect()
    assert client.closed is not None and client.closed[0] == code


async def test_unknown_session_is_refused(server: RunningServer) -> None:
    from .helpers import ADMIN_TOKEN

    client = server.client("nope", ADMIN_TOKEN)
    with pytest.raises(ConnectionError):
        await client.connect()
    assert client.closed is not None and client.closed[0] == CloseCode.NOT_FOUND


async def test_unknown_roots_are_refused(server: RunningServer, session: ReviewSession) -> None:
    async with server.client(session.id, session.tokens["editor"]) as a:
        stranger: Doc = Doc()
        stranger.get("scratch", type=Map)["x"] = 1
        await a.send_raw(codec.sync_update(stranger.get_update()))
        await a.wait_for(lambda: a.denied)
        assert "unknown document root 'scratch'" in a.denied[0]


async def test_a_reconnecting_viewer_is_not_told_off(
    server: RunningServer, session: ReviewSession
) -> None:
    async with (
        server.client(session.id, session.tokens["commenter"]) as writer,
        server.client(session.id, session.tokens["viewer"]) as viewer,
    ):
        writer.add_pin("p", x=1, y=1, text="one", author=session.users["commenter"])
        writer.pins["p"]["text"] = "two"  # overwrites leave deletions in the document
        await viewer.wait_for(lambda: "p" in viewer.pins and viewer.pins["p"]["text"] == "two")
        await viewer.disconnect()
        await viewer.connect()
        writer.pins["p"]["text"] = "three"
        await viewer.wait_for(lambda: viewer.pins["p"]["text"] == "three")
        assert viewer.denied == []
