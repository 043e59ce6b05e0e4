"""Interop with the official Yjs client (yjs + y-websocket's WebsocketProvider under Node).

Users' browsers run the stock Yjs stack, scripts run the Python client; both must meet in
the same room through the server, under the same write guard (DESIGN.md sections 3-5).
Each test drives one or more `node tests/js/yclient.mjs` processes (tests/yjs_driver.py)
against a real server.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from . import requires
from .helpers import PEOPLE, ReviewSession, RunningServer
from .yjs_driver import YjsClient, ensure_node_modules

pytestmark = pytest.mark.slow

TITLE = "Test review"  # the title conftest's session fixture gives every session


@pytest.fixture(scope="module", autouse=True)
def _node_modules() -> Iterator[None]:
    if shutil.which("node") is None:
        requires.missing("`node` is not on PATH: the Yjs interop tests need Node >= 18")
    ensure_node_modules()
    yield


def ws_url(server: RunningServer) -> str:
    assert server.url.startswith("http://")
    return "ws://" + server.url.removeprefix("http://") + "/ws"


@asynccontextmanager
async def yjs(
    server: RunningServer, session: ReviewSession, role: str, **kwargs: Any
) -> AsyncIterator[YjsClient]:
    """A synced Yjs client with the share-link token of `role`."""
    async with YjsClient(ws_url(server), session.id, session.tokens[role], **kwargs) as client:
        await client.wait_event("synced", timeout=10)
        yield client


async def until(
    predicate: Callable[[], Any | Awaitable[Any]], *, timeout: float = 5, what: str = ""
) -> None:
    """Wait for a condition that has no event to wait on (re-checked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what or predicate}")
        await asyncio.sleep(0.02)


async def state_of(client: YjsClient) -> dict[str, Any]:
    state: dict[str, Any] = (await client.call("state"))["state"]
    return state


async def wait_path(
    client: YjsClient, path: list[Any], equals: Any = None, timeout: float = 5
) -> Any:
    """Wait in the Yjs client until the value at `path` exists (or equals `equals`)."""
    fields: dict[str, Any] = {"path": path, "timeout": timeout}
    if equals is not None:
        fields["equals"] = equals
    result = await client.call("wait", **fields)
    assert result["ok"], f"{path} is {result['value']!r} in the Yjs client, wanted {equals!r}"
    return result["value"]


def denials(client: YjsClient) -> list[str]:
    return [ev["reason"] for ev in client.events_named("permission_denied")]


def new_pin(author: str, text: str, *, x: float = 10, y: float = 20) -> dict[str, Any]:
    """A pin's creatable fields as a Yjs client writes them (the thread is added by add_pin)."""
    return {
        "x": x,
        "y": y,
        "author": author,
        "text": text,
        "status": "open",
        "created_at": time.time(),
    }


# -- 1. sync both ways ------------------------------------------------------------------------


async def test_yjs_and_python_clients_sync_pins_and_replies(
    server: RunningServer, session: ReviewSession
) -> None:
    commenter, editor = session.users["commenter"], session.users["editor"]
    async with (
        server.client(session.id, session.tokens["editor"]) as py,
        yjs(server, session, "commenter") as js,
    ):
        # The Yjs client got the server's document on sync.
        assert (await state_of(js))["meta"]["title"] == TITLE

        pin = new_pin(commenter, "logo is too small", x=12, y=34)
        await js.call("add_pin", pin_id="p1", pin=pin)
        await py.wait_for(lambda: "p1" in py.pins and "thread" in py.pins["p1"], timeout=5)
        got = py.state()["pins"]["p1"]
        assert got == {**pin, "thread": []}

        py.reply("p1", "c1", text="agreed, make it 2x", author=editor)
        comment = await wait_path(js, ["pins", "p1", "thread", 0])
        assert comment["id"] == "c1"
        assert comment["author"] == editor
        assert comment["text"] == "agreed, make it 2x"
        assert isinstance(comment["at"], float | int)

        # The Yjs client replies too, so both directions carry thread entries.
        await js.call(
            "reply",
            pin_id="p1",
            comment={"id": "c2", "author": commenter, "text": "thanks", "at": time.time()},
        )
        await py.wait_for(lambda: len(py.pins["p1"]["thread"]) == 2, timeout=5)

        js_state, py_state = await state_of(js), py.state()
        assert js_state == py_state
        assert [c["id"] for c in py_state["pins"]["p1"]["thread"]] == ["c1", "c2"]
        assert denials(js) == []
        assert py.denied == []


# -- 2. the write guard: a Yjs writer's forbidden change reaches no one -------------------

FORBIDDEN = {
    "server root": ("set", {"root": "meta", "key": "title", "value": "Hacked"}),
    "forged author": ("add_pin", {"pin_id": "forged"}),
    "another's pin": ("set_pin_field", {"pin_id": "theirs", "key": "text", "value": "vandal"}),
    "deletion": ("delete_pin", {"pin_id": "theirs"}),
    "unknown root": ("set_unknown_root", {"root": "evil", "key": "x", "value": "payload"}),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN))
async def test_a_forbidden_yjs_write_reaches_no_one_and_its_writer_is_told(
    server: RunningServer, session: ReviewSession, case: str
) -> None:
    commenter, editor = session.users["commenter"], session.users["editor"]
    async with (
        server.client(session.id, session.tokens["editor"]) as py,
        yjs(server, session, "approver") as honest,
    ):
        # Every value the Python client and the honest Yjs client ever see.
        seen: list[Any] = []

        def on_change(events: list[Any]) -> None:
            for event in events:
                for change in getattr(event, "keys", {}).values():
                    seen.append(change.get("newValue"))
                    seen.append(change.get("action"))

        subscriptions = [py.meta.observe_deep(on_change), py.pins.observe_deep(on_change)]
        py.add_pin("theirs", x=5, y=6, text="original text", author=editor)
        await wait_path(honest, ["pins", "theirs", "text"], "original text")

        async with yjs(server, session, "commenter", reconnect=False) as attacker:
            op, fields = FORBIDDEN[case]
            if op == "add_pin":
                fields = {**fields, "pin": new_pin(editor, "not mine")}
            await attacker.call(op, **fields)
            await until(lambda: denials(attacker), what="permission denied")
            # The stock client cannot undo its change: building on it, it is closed as
            # out of sync (4409) rather than left stalled; a pure deletion takes no clock,
            # so its writer keeps writing until its next sync repeats the change.
            await attacker.call("add_pin", pin_id="after", pin=new_pin(commenter, "next"))
            if case == "deletion":
                await wait_path(honest, ["pins", "after", "text"], "next")
            else:
                closed = await attacker.wait_event("close", timeout=10)
                assert closed["code"] == 4409, closed

        # The honest Yjs client kept working throughout, and so did the Python one.
        reply = {"id": "c1", "author": session.users["approver"], "text": "ok", "at": time.time()}
        await honest.call("reply", pin_id="theirs", comment=reply)
        await py.wait_for(lambda: len(py.pins["theirs"]["thread"]) == 1, timeout=5)
        async with server.client(session.id, session.tokens["viewer"]) as newcomer:
            for label, state in (
                ("honest yjs", await state_of(honest)),
                ("python", py.state()),
                ("newcomer", newcomer.state()),
            ):
                assert state["meta"]["title"] == TITLE, label
                assert "forged" not in state["pins"], label
                assert state["pins"]["theirs"]["text"] == "original text", label
                assert "evil" not in state, label
            assert await state_of(honest) == py.state() == newcomer.state()
        assert denials(honest) == [] and py.denied == []
        for forbidden in ("Hacked", "vandal", "payload"):
            assert forbidden not in seen
        assert "delete" not in seen
        del subscriptions


# -- 3. viewers cannot write ------------------------------------------------------------------


async def test_viewer_yjs_edit_is_denied_and_never_reaches_others(
    server: RunningServer, session: ReviewSession
) -> None:
    viewer, commenter = session.users["viewer"], session.users["commenter"]
    async with (
        server.client(session.id, session.tokens["editor"]) as py,
        server.client(session.id, session.tokens["commenter"]) as writer,
        yjs(server, session, "viewer") as js,
    ):
        pins_seen: list[str] = []
        subscription = py.pins.observe(lambda event: pins_seen.extend(event.keys))

        await js.call("add_pin", pin_id="from-viewer", pin=new_pin(viewer, "let me in"))
        await js.wait_event("permission_denied", timeout=5)

        # A later write by someone else reaches the Python client after anything the server
        # could have relayed from the viewer's update; the viewer still receives it.
        writer.add_pin("after", x=1, y=1, text="later", author=commenter)
        await py.wait_for(lambda: "after" in py.pins, timeout=5)
        await wait_path(js, ["pins", "after", "text"], "later")

        assert "from-viewer" not in py.pins
        assert "from-viewer" not in writer.pins
        assert "from-viewer" not in pins_seen
        # The stock y-websocket client keeps its local edit; only its own doc has it.
        assert "from-viewer" in (await state_of(js))["pins"]
        assert len(denials(js)) == 1
        assert py.denied == [] and writer.denied == []
        del subscription


# -- 4. late joiners get everything --------------------------------------------------------


async def test_late_joining_yjs_client_receives_the_full_document(
    server: RunningServer, session: ReviewSession
) -> None:
    editor = session.users["editor"]
    async with (
        server.client(session.id, session.tokens["editor"]) as py,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        with py.doc.transaction():
            for i in range(50):
                pin_id = f"pin-{i:02d}"
                py.add_pin(pin_id, x=i, y=i % 48, text=f"pin number {i}", author=editor)
                for j in range(3):
                    py.reply(pin_id, f"{pin_id}-c{j}", text=f"reply {j} to {i}", author=editor)
        # Once another client has it all, the server has applied (and logged) it all.
        await watcher.wait_for(
            lambda: (
                len(watcher.pins) == 50
                and all(len(p["thread"]) == 3 for p in watcher.pins.values())
            ),
            timeout=10,
        )
        expected = py.state()

        async with yjs(server, session, "commenter") as late:
            # No waiting on content: everything must be there as soon as it reports synced.
            got = await state_of(late)
        assert len(got["pins"]) == 50
        assert got["pins"]["pin-49"]["thread"][2]["text"] == "reply 2 to 49"
        assert got == expected
        assert py.denied == []


# -- 5. presence ------------------------------------------------------------------------------


async def test_yjs_awareness_reaches_python_stamped_and_leaves_on_close(
    server: RunningServer, session: ReviewSession
) -> None:
    commenter, editor = session.users["commenter"], session.users["editor"]
    async with server.client(session.id, session.tokens["editor"]) as py:
        js = YjsClient(ws_url(server), session.id, session.tokens["commenter"])
        async with js:
            await js.wait_event("synced", timeout=10)
            client_id = (await js.call("awareness_states"))["client_id"]
            await js.call(
                "awareness",
                state={
                    "user": {"id": "someone-else", "name": "Yjs Tester", "colour": "#e33"},
                    "cursor": {"x": 7, "y": 8},
                },
            )
            await py.wait_for(
                lambda: py.peers.get(client_id, {}).get("cursor") == {"x": 7, "y": 8}, timeout=5
            )
            user = py.peers[client_id]["user"]
            assert user["id"] == commenter  # stamped by the server, not the claimed id
            assert user["role"] == "commenter"
            assert user["name"] == PEOPLE["commenter"]  # the name joined with, not the claim
            assert user["colour"] == "#e33"

            # The other way round: the Yjs client sees the Python client's presence, stamped.
            await py.set_awareness({"user": {"id": "forged", "name": "Py"}, "cursor": None})

            async def python_presence() -> dict[str, Any] | None:
                states: dict[str, Any] = (await js.call("awareness_states"))["by_client"]
                mine: dict[str, Any] | None = states.get(str(py.doc.client_id))
                return mine

            await until(python_presence, what="the Python client's presence in Yjs")
            py_state = await python_presence()
            assert py_state is not None
            assert py_state["user"]["id"] == editor
            assert py_state["user"]["role"] == "editor"
            assert py_state["user"]["name"] == PEOPLE["editor"]

            await js.call("close")  # WebsocketProvider.destroy(): leaves the room
        await py.wait_for(lambda: client_id not in py.peers, timeout=5)


# -- 6. bad tokens ----------------------------------------------------------------------------


async def test_bad_token_closes_the_yjs_client_with_4401(
    server: RunningServer, session: ReviewSession
) -> None:
    async with YjsClient(ws_url(server), session.id, "pr_not_a_real_token", reconnect=False) as js:
        close = await js.wait_event("close", timeout=10)
        assert close["code"] == 4401, close
        assert js.events_named("synced") == []
