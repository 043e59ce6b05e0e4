"""A Yjs client id belongs to the person who first wrote with it (DESIGN.md section 4).

Every struct of an update is named (client id, clock), and a CRDT takes a struct it already
holds as a duplicate. So anyone who writes with another participant's client id at that
client's next clock makes that participant's next change a "duplicate": dropped by the
server and by everyone else, silently and for good. Client ids travel in every broadcast and
every presence message, so any participant could do it. The guard binds each client id to
the identity that first wrote with it, across restarts, and refuses writes with an id that
is someone else's.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map

from proofroom.shared import codec
from proofroom.shared.protocol import CloseCode

from .helpers import ReviewSession, RunningServer, pin_map, run_server


def forged_update(victim: Doc[Any], build: Any) -> bytes:
    """An update made by a copy of the victim's document: the victim's id, its next clock."""
    forger: Doc[Any] = Doc(client_id=victim.client_id)
    forger.apply_update(victim.get_update())
    before = forger.get_state()
    build(forger)
    return forger.get_update(before)


async def test_writing_with_another_persons_client_id_is_refused_and_loses_nothing(
    server: RunningServer, session: ReviewSession
) -> None:
    victim_id, attacker_id = session.users["editor"], session.users["commenter"]
    async with (
        server.client(session.id, session.tokens["editor"]) as victim,
        server.client(session.id, session.tokens["commenter"]) as attacker,
        server.client(session.id, session.tokens["viewer"]) as watcher,
    ):
        attacker.add_pin("mine", x=1, y=1, text="attacker's pin", author=attacker_id)
        victim.add_pin("p", x=1, y=1, text="first", author=victim_id)
        await watcher.wait_for(lambda: {"p", "mine"} <= set(watcher.pins))
        # Within the attacker's own rights (its own pin), but under the victim's client id.
        update = forged_update(
            victim.doc, lambda d: d.get("pins", type=Map)["mine"].__setitem__("text", "x")
        )
        await attacker.send_raw(codec.sync_update(update))
        await attacker.wait_for(lambda: attacker.denied or attacker.closed is not None)
        reason = attacker.denied[0] if attacker.denied else attacker.closed[1]  # type: ignore[index]
        assert "another participant" in reason
        victim.pins["p"]["text"] = "second"
        await watcher.wait_for(lambda: watcher.pins["p"]["text"] == "second")
        assert watcher.pins["mine"]["text"] == "attacker's pin"
    async with server.client(session.id, session.tokens["viewer"]) as late:
        assert late.pins["p"]["text"] == "second"


async def test_client_ids_stay_bound_after_a_restart(tmp_path: Any) -> None:
    data = tmp_path / "data"
    async with run_server(data) as server:
        session = await server.new_session()
        async with server.client(session.id, session.tokens["editor"]) as victim:
            victim.add_pin("p", x=1, y=1, text="first", author=session.users["editor"])
            async with server.client(session.id, session.tokens["viewer"]) as watcher:
                await watcher.wait_for(lambda: "p" in watcher.pins)
            victim_doc_state = victim.doc.get_update()
            victim_client = victim.doc.client_id
    async with run_server(data) as server:
        attacker_id = session.users["commenter"]
        async with server.client(session.id, session.tokens["commenter"]) as attacker:
            victim_copy: Doc[Any] = Doc(client_id=victim_client)
            victim_copy.apply_update(victim_doc_state)
            update = forged_update(
                victim_copy,
                lambda d: d.get("pins", type=Map).__setitem__("forged", pin_map(attacker_id)),
            )
            await attacker.send_raw(codec.sync_update(update))
            await attacker.wait_for(lambda: attacker.denied or attacker.closed is not None)
            if attacker.closed is not None:
                assert attacker.closed[0] == CloseCode.OUT_OF_SYNC
        async with server.client(session.id, session.tokens["viewer"]) as late:
            assert "forged" not in late.pins
