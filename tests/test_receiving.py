"""Receiving: messages a client sends before, during and after the switch to direct delivery."""

from __future__ import annotations

import time
from typing import Any

import websockets
from pycrdt import Array, Doc, Map

from proofroom.shared import codec
from proofroom.shared.protocol import CloseCode

from .helpers import ReviewSession, RunningServer, expected_fast_paths


def _ws_url(server: RunningServer, session: ReviewSession, role: str) -> str:
    base = server.url.replace("http://", "ws://")
    return f"{base}/ws/{session.id}?token={session.tokens[role]}"


class _Writer:
    """A bare y-websocket writer: a pycrdt Doc whose every change becomes one frame."""

    def __init__(self, author: str) -> None:
        self.doc: Doc[Any] = Doc()
        self.pins = self.doc.get("pins", type=Map)
        self.author = author

    def new_pin(self, pin_id: str) -> bytes:
        before = self.doc.get_state()
        self.pins[pin_id] = Map(
            {
                "x": 1.0,
                "y": 1.0,
                "author": self.author,
                "text": pin_id,
                "status": "open",
                "created_at": time.time(),
                "thread": Array(),
            }
        )
        return codec.sync_update(self.doc.get_update(before))


async def test_messages_sent_before_the_greeting_are_all_applied(
    server: RunningServer, session: ReviewSession
) -> None:
    writer = _Writer(session.users["editor"])
    frames = [codec.sync_step1(writer.doc.get_state())]
    frames += [writer.new_pin(f"p{i:03d}") for i in range(200)]
    async with server.client(session.id, session.tokens["viewer"]) as watcher:
        async with websockets.connect(_ws_url(server, session, "editor")) as ws:
            # Everything goes out at once, before the server's greeting is even read: the
            # first messages queue for the connection's read loop, the rest arrive after
            # it switched to direct delivery.
            for frame in frames:
                await ws.send(frame)
            await watcher.wait_for(lambda: len(watcher.pins) == 200, timeout=20)
            # With the fast paths off (scripts/test's second run) the same messages all go
            # through the read loop: the test holds either way, and checks which way it ran.
            peers = server.services.rooms.rooms[session.id].peers
            assert {conn.fast_paths for conn in peers} == {expected_fast_paths()}
        assert sorted(watcher.pins.keys()) == [f"p{i:03d}" for i in range(200)]
        assert watcher.pins["p199"]["text"] == "p199"


async def test_nothing_after_a_text_frame_is_applied(
    server: RunningServer, session: ReviewSession
) -> None:
    writer = _Writer(session.users["editor"])
    before, after = writer.new_pin("before"), writer.new_pin("after")
    async with server.client(session.id, session.tokens["viewer"]) as watcher:
        async with websockets.connect(_ws_url(server, session, "editor")) as ws:
            await ws.recv()  # the greeting: the connection reads directly by now
            await ws.send(before)
            await ws.send("not binary")
            await ws.send(after)
            await ws.wait_closed()
            assert ws.close_code == CloseCode.BAD_MESSAGE
        await watcher.wait_for(lambda: "before" in watcher.pins)
    async with server.client(session.id, session.tokens["viewer"]) as late:
        assert "before" in late.pins
        assert "after" not in late.pins
