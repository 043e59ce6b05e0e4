"""Property: honest edits and forbidden writes mixed at random, through the real server.

Several honest clients add pins, edit and resolve their own, reply to anyone's, and drop off
and come back with offline edits; an attacker meanwhile sends random forbidden writes
(unknown roots, wrong root types, other people's pins, deletions, server roots, oversize
values, forged authors). At the end every honest client and a newcomer hold the same state,
it holds every honest edit, and nothing of any forbidden write is in it, in the log or in
the bytes a newcomer downloads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map

from proofroom.client import SessionClient
from proofroom.shared import codec

from .helpers import pin_map, run_server

MARKER = "FORBIDDEN-9b2e"
HONEST_ROLES = ("commenter", "editor", "approver")

FORBIDDEN = (
    "unknown_root",
    "pins_as_array",
    "edit_others_pin",
    "delete_pin",
    "server_root",
    "oversize_text",
    "forged_author",
    "edit_others_reply",
)

honest_op = st.tuples(
    st.sampled_from(["add", "edit", "reply", "status", "toggle_connection"]),
    st.integers(0, len(HONEST_ROLES) - 1),
    st.integers(0, 1000),
)
forbidden_op = st.tuples(st.just("forbidden"), st.sampled_from(FORBIDDEN), st.integers(0, 1000))
scenario = st.lists(st.one_of(honest_op, honest_op, forbidden_op), min_size=5, max_size=30)


def _stranger(build: Any) -> bytes:
    doc: Doc[Any] = Doc()
    build(doc)
    return doc.get_update()


async def _run(data: Path, ops: list[tuple[str, Any, int]]) -> None:
    async with run_server(data) as server:
        session = await server.new_session()
        intruder = await server.join(session.links["commenter"], "Ivan Intruder")
        # Each connection may have 10 refusals in a burst: the intruder uses three.
        attackers = [server.client(session.id, intruder["token"]) for _ in range(3)]
        users = {role: session.users[role] for role in HONEST_ROLES}
        clients = {role: server.client(session.id, session.tokens[role]) for role in HONEST_ROLES}
        for client in (*clients.values(), *attackers):
            await client.connect()
        #: What the honest clients wrote: pin -> (author role, text, status), replies.
        pins: dict[str, list[str]] = {}
        replies: dict[str, set[str]] = {}
        counter = refused = 0
        for kind, who, seed in ops:
            counter += 1
            if kind == "forbidden":
                attacker = attackers[counter % len(attackers)]
                refused += await _forbidden(who, seed, attacker, pins, users, intruder["user_id"])
                continue
            role = HONEST_ROLES[who]
            client = clients[role]
            own = [p for p, (r, *_rest) in pins.items() if r == role]
            if kind == "toggle_connection":
                if client.connected:
                    await client.disconnect()
                else:
                    await client.connect()
            elif kind == "add" or (kind in ("edit", "status") and not own):
                pin_id = f"{role}-{counter}"
                client.add_pin(pin_id, x=1, y=1, text=f"t{counter}", author=users[role])
                pins[pin_id] = [role, f"t{counter}", "open"]
                replies[pin_id] = set()
            elif kind == "edit":
                pin_id = own[seed % len(own)]
                client.pins[pin_id]["text"] = pins[pin_id][1] = f"edited {counter}"
            elif kind == "status":
                pin_id = own[seed % len(own)]
                new = "resolved" if pins[pin_id][2] == "open" else "open"
                client.pins[pin_id]["status"] = pins[pin_id][2] = new
            elif kind == "reply" and pins:
                pin_id = sorted(pins)[seed % len(pins)]
                if pin_id in client.pins:  # an offline client may not have it yet
                    client.reply(pin_id, f"c{counter}", text="a reply", author=users[role])
                    replies[pin_id].add(f"c{counter}")
            await asyncio.sleep(0)
        for client in clients.values():
            if not client.connected:
                await client.connect()
        async with server.client(session.id, session.tokens["viewer"]) as probe:

            def complete() -> bool:
                state = probe.state()["pins"]
                return all(
                    pin_id in state
                    and state[pin_id]["text"] == text
                    and state[pin_id]["status"] == status
                    and {c["id"] for c in state[pin_id]["thread"]} == replies[pin_id]
                    for pin_id, (_role, text, status) in pins.items()
                )

            await probe.wait_for(complete, timeout=20)
            expected = probe.state()
            for client in clients.values():
                await client.wait_for(lambda c=client: c.state() == expected, timeout=20)
                assert client.denied == []
        async with server.client(session.id, session.tokens["viewer"]) as newcomer:
            assert newcomer.state() == expected
            assert set(expected["pins"]) == set(pins)
            raw = newcomer.doc.get_update()
        # Told every time, never closed: the client replaced its copy after each refusal.
        assert sum(len(a.denied) for a in attackers) == refused
        assert all(a.closed is None for a in attackers)
        for client in (*clients.values(), *attackers):
            await client.disconnect()
        assert MARKER.encode() not in raw
        for client in clients.values():
            assert MARKER.encode() not in client.doc.get_update()
    with sqlite3.connect(data / "proofroom.sqlite3") as db:
        rows = db.execute("SELECT data FROM doc_updates UNION ALL SELECT data FROM doc_snapshots")
        for (blob,) in rows:
            assert MARKER.encode() not in blob


async def _forbidden(
    kind: str,
    seed: int,
    attacker: SessionClient,
    pins: dict[str, list[str]],
    users: dict[str, str],
    me: str,
) -> int:
    """Send one forbidden write; return how many refusals it is worth (0: nothing to try)."""
    if not attacker.connected:
        await attacker.connect()
    before = len(attacker.denied)
    others = sorted(p for p in pins if p in attacker.pins)
    target = others[seed % len(others)] if others else None
    if kind == "unknown_root":
        update = _stranger(lambda d: d.get("evil", type=Map).__setitem__("x", MARKER))
        await attacker.send_raw(codec.sync_update(update))
    elif kind == "pins_as_array":
        update = _stranger(lambda d: d.get("pins", type=Array).append(MARKER))
        await attacker.send_raw(codec.sync_update(update))
    elif kind == "server_root":
        attacker.meta["title"] = MARKER
    elif kind == "oversize_text":
        attacker.pins[f"big{seed}"] = pin_map(me, MARKER + "x" * 20_000)
    elif kind == "forged_author":
        attacker.pins[f"forged{seed}"] = pin_map(users["editor"], MARKER)
    elif target is None:
        return 0
    elif kind == "edit_others_pin":
        attacker.pins[target]["text"] = MARKER
    elif kind == "delete_pin":
        del attacker.pins[target]
    elif kind == "edit_others_reply":
        thread = attacker.pins[target]["thread"]
        if len(thread) == 0:
            return 0
        thread[0]["text"] = MARKER
    # The attacker is told every time, and its copy is replaced by the server's.
    await attacker.wait_for(lambda: len(attacker.denied) > before or attacker.closed is not None)
    # ... and its copy is fresh again before its next write.
    await attacker.wait_for(lambda: attacker.synced.is_set() and attacker._fresh is None)
    return 1


@settings(
    max_examples=12,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=scenario)
def test_honest_edits_survive_and_forbidden_writes_vanish(
    tmp_path_factory: Any, ops: list[tuple[str, Any, int]]
) -> None:
    asyncio.run(_run(tmp_path_factory.mktemp("prop"), ops))
