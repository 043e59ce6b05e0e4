"""Convergence: random edits by several clients, with disconnects, end in one state."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofroom.client import SessionClient
from proofroom.shared.protocol import CloseCode

from .helpers import eventually, run_server

WRITERS = ("commenter", "editor", "approver")

op = st.tuples(
    st.integers(0, len(WRITERS) - 1),
    st.sampled_from(
        [
            "add_pin",
            "add_pin",
            "reply",
            "reply",
            "edit_own",
            "toggle_status",
            "edit_foreign",
            "disconnect",
            "reconnect",
            "pause",
        ]
    ),
    st.integers(0, 1_000),
)


async def _play(ops: list[tuple[int, str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with run_server(Path(tmp) / "data") as server:
            session = await server.new_session(width=512, height=512)
            clients = [server.client(session.id, session.tokens[role]) for role in WRITERS]
            users = [session.users[role] for role in WRITERS]
            for c in clients:
                await c.connect()
            for n, (who, action, k) in enumerate(ops):
                await _apply(clients[who], users[who], action, k, n)
            for c in clients:
                if not c.connected:
                    await c.connect()
            room = server.services.rooms.rooms[session.id]

            def converged() -> bool:
                expected = room.state()
                return all(c.state() == expected for c in clients)

            # A writer whose copy holds a refused change may be closed with OUT_OF_SYNC while
            # the others settle (an edit it made before the refusal reached it); it recovers
            # by reconnecting from a fresh copy, as the browser client does by itself.
            for _ in range(len(clients) + 1):
                await eventually(
                    lambda: converged() or any(c.closed is not None for c in clients),
                    timeout=15,
                )
                closed = [c for c in clients if c.closed is not None]
                if not closed:
                    break
                for c in closed:
                    assert c.closed is not None and c.closed[0] == CloseCode.OUT_OF_SYNC, c.closed
                    await c.connect()
            await clients[0].wait_for(converged, timeout=15)
            async with server.client(session.id, session.tokens["viewer"]) as late:
                assert late.state() == room.state()
            for c in clients:
                await c.disconnect()


async def _apply(c: SessionClient, me: str, action: str, k: int, n: int) -> None:
    pins = sorted(c.pins.keys())
    mine = [p for p in pins if c.pins[p]["author"] == me]
    foreign = [p for p in pins if c.pins[p]["author"] != me]
    if action == "add_pin":
        c.add_pin(f"{me}-{n}", x=k % 512, y=(k * 7) % 512, text=f"pin {n}", author=me)
    elif action == "reply" and pins:
        c.reply(pins[k % len(pins)], f"{me}-c{n}", text=f"reply {n}", author=me)
    elif action == "edit_own" and mine:
        c.pins[mine[k % len(mine)]]["text"] = f"edited {n}"
    elif action == "toggle_status" and mine:
        pin = c.pins[mine[k % len(mine)]]
        pin["status"] = "resolved" if pin["status"] == "open" else "open"
    elif action == "edit_foreign" and foreign:
        c.pins[foreign[k % len(foreign)]]["text"] = "not mine"  # the guard reverts it
    elif action == "disconnect" and c.connected:
        await c.disconnect()
    elif action == "reconnect" and not c.connected:
        await c.connect()
    elif action == "pause":
        await c.flush()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(op, min_size=5, max_size=40))
def test_random_edits_converge(ops: list[tuple[int, str, int]]) -> None:
    asyncio.run(_play(ops))
