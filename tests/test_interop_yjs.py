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

from .helpers import ReviewSession, RunningServer
from .yjs_driver import YjsClient, ensure_node_modules

pytestmark = pytest.mark.slow

TITLE = "Test review"  # the title conftest's session fixture gives every session


@pytest.fixture(scope="module", autouse=True)
def _node_modules() -> Iterator[None]:
    if shutil.which("node") is None:
        pytest.skip("`node` is not on PATH: the Yjs interop tests need Node >= 18")
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


# -- 2. the write guard reverts a Yjs writer's forbidden changes everywhere ----------------


async def test_forbidden_yjs_writes_are_denied_and_reverted_on_every_client(
    server: RunningServer, session: ReviewSession
) -> None:
    commenter, editor = session.users["commenter"], session.users["editor"]
    async with (
        server.client(session.id, session.tokens["editor"]) as py,
        yjs(server, session, "commenter") as js,
        yjs(server, session, "approver") as other,
    ):
        # Everything the Python client ever sees of the title and of new pins.
        titles_seen: list[Any] = []
        pins_seen: list[str] = []
        texts_seen: list[Any] = []

        def on_meta(event: Any) -> None:
            change = event.keys.get("title")
            if change is not None and "newValue" in change:
                titles_seen.append(change["newValue"])

        def on_pins(events: list[Any]) -> None:
            for event in events:
                path = list(event.path)
                if not path:
                    pins_seen.extend(k for k, c in event.keys.items() if c["action"] != "delete")
                elif len(path) == 1 and "text" in getattr(event, "keys", {}):
                    texts_seen.append(event.keys["text"].get("newValue"))

        subscriptions = [py.meta.observe(on_meta), py.pins.observe_deep(on_pins)]

        # Someone else's pin (the editor's), seen by the Yjs commenter.
        py.add_pin("theirs", x=5, y=6, text="original text", author=editor)
        await wait_path(js, ["pins", "theirs", "text"], "original text")

        # (a) meta is server-owned.
        await js.call("set", root="meta", key="title", value="Hacked")
        await until(lambda: len(denials(js)) >= 1, what="permission denied for meta.title")
        await wait_path(js, ["meta", "title"], TITLE)

        # (b) a pin claiming someone else as its author.
        await js.call("add_pin", pin_id="forged", pin=new_pin(editor, "not mine"))

        async def forged_gone() -> bool:
            return "forged" not in (await state_of(js))["pins"]

        await until(lambda: len(denials(js)) >= 2, what="permission denied for a forged pin")
        await until(forged_gone, what="the forged pin is reverted in the Yjs client")

        # (c) editing another person's pin.
        await js.call("set_pin_field", pin_id="theirs", key="text", value="vandalised")
        await until(lambda: len(denials(js)) >= 3, what="permission denied for another's pin")
        await wait_path(js, ["pins", "theirs", "text"], "original text")
        assert len(denials(js)) == 3, denials(js)

        # The Yjs client is not stalled: its next, allowed write reaches everyone. The
        # server sends in order on each connection, so once the others have this marker
        # they also have whatever the server sent about the forbidden writes.
        await js.call("add_pin", pin_id="marker", pin=new_pin(commenter, "allowed"))
        await py.wait_for(lambda: "marker" in py.pins, timeout=5)
        await wait_path(other, ["pins", "marker", "text"], "allowed")

        for label, state in (
            ("yjs writer", await state_of(js)),
            ("other yjs", await state_of(other)),
            ("python", py.state()),
        ):
            assert state["meta"]["title"] == TITLE, label
            assert "forged" not in state["pins"], label
            assert state["pins"]["theirs"]["text"] == "original text", label
            assert state["pins"]["marker"]["author"] == commenter, label
        assert await state_of(js) == await state_of(other) == py.state()
        assert len(denials(js)) == 3
        assert denials(other) == [] and py.denied == []

        # The other clients never saw the forbidden values, not even for a moment.
        assert "Hacked" not in titles_seen
        assert "forged" not in pins_seen
        assert "vandalised" not in texts_seen
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
            assert user["name"] == "Yjs Tester"
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
