"""Meeting replay: a session's history from its document log, over the real HTTP API."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pycrdt import merge_updates

from proofroom.client import ApiClient, ApiError
from proofroom.server.review import replay as replay_module

from .helpers import ADMIN_TOKEN, PEOPLE, ReviewSession, RunningServer, eventually, run_server
from .review_steps import decide, upload_version, wait_for_pin
from .test_offloop import Hold, run_while_held

#: What the played meeting below must read back as, in this order: (kind, actor, pin).
EXPECTED = [
    ("session.created", "Admin", None),
    ("pin.created", PEOPLE["commenter"], "p1"),
    ("reply.created", PEOPLE["editor"], "p1"),
    ("version.created", PEOPLE["editor"], "p1"),
    ("version.decision", PEOPLE["approver"], "p1"),
    ("version.state", None, "p1"),
    ("version.created", PEOPLE["editor"], "p1"),
    ("version.decision", PEOPLE["approver"], "p1"),
    ("version.state", None, "p1"),
    ("pin.resolved", None, "p1"),  # approving the fix resolved it
    ("pin.moved", PEOPLE["commenter"], "p1"),
    ("pin.reopened", None, "p1"),
]


def thread_length(server: RunningServer, session_id: str, pin_id: str) -> int:
    room = server.services.rooms.rooms[session_id]
    return len(room.pins[pin_id]["thread"])


async def play(server: RunningServer, s: ReviewSession) -> dict[str, str]:
    """A short meeting: a pin, a reply, two versions (changes, then approved), moved and
    reopened."""
    async with (
        server.client(s.id, s.tokens["commenter"]) as commenter,
        server.client(s.id, s.tokens["editor"]) as editor,
        ApiClient(server.url, s.tokens["editor"]) as edit,
        ApiClient(server.url, s.tokens["approver"]) as approve,
    ):
        commenter.add_pin("p1", x=10, y=12, text="the sky is too dull", author=s.users["commenter"])
        await commenter.flush()
        await wait_for_pin(server, s.id, "p1")
        await editor.wait_for(lambda: "p1" in editor.pins)
        editor.reply("p1", "c1", text="on it", author=s.users["editor"])
        await editor.flush()
        await eventually(lambda: thread_length(server, s.id, "p1") == 1)
        v1 = await upload_version(edit, s.id, "p1", (10, 200, 10))
        await decide(approve, s.id, v1, "request_changes", "bluer")
        v2 = await upload_version(edit, s.id, "p1", (10, 10, 200))
        await decide(approve, s.id, v2, "approve", "good")
        await commenter.wait_for(lambda: len(commenter.layers) == 2)
        commenter.pins["p1"]["x"] = 20
        await commenter.flush()
        await eventually(lambda: server.services.rooms.rooms[s.id].pins["p1"]["x"] == 20)
        commenter.pins["p1"]["status"] = "open"
        await commenter.flush()
        await eventually(lambda: server.services.rooms.rooms[s.id].pins["p1"]["status"] == "open")
    return {"v1": v1, "v2": v2}


async def history(server: RunningServer, token: str, session_id: str) -> dict[str, Any]:
    async with ApiClient(server.url, token) as api:
        body: dict[str, Any] = await api.json("GET", f"/api/sessions/{session_id}/replay")
    return body


def check_meeting(body: dict[str, Any], versions: dict[str, str], *, told: bool = False) -> None:
    """``told``: from a snapshot, which keeps where the pin is and whether it is open now,
    not its moves and status changes."""
    events = body["events"]
    expected = EXPECTED[:9] if told else EXPECTED
    assert [(e["kind"], e["actor"], e["pin"]) for e in events] == expected, events
    assert [e["seq"] for e in events] == list(range(len(events)))
    ats = [e["at"] for e in events]
    assert ats == sorted(ats), ats
    created, reply, v1, d1, s1, v2, d2, s2 = events[1:9]
    x = 20 if told else 10
    assert (created["x"], created["y"], created["text"]) == (x, 12, "the sky is too dull")
    assert (reply["comment"], reply["text"]) == ("c1", "on it")
    assert (v1["version"], v1["number"], v1["via"]) == (versions["v1"], 1, "upload")
    assert (d1["version"], d1["decision"], d1["note"]) == (
        versions["v1"],
        "request_changes",
        "bluer",
    )
    assert (s1["version"], s1["state"]) == (versions["v1"], "changes_requested")
    assert (v2["version"], v2["number"]) == (versions["v2"], 2)
    assert (d2["decision"], d2["note"], s2["state"]) == ("approve", "good", "approved")
    if not told:
        assert (events[10]["x"], events[10]["y"]) == (20, 12)
    assert body["session"]["base"] and body["session"]["width"] == 64


async def test_the_replay_tells_the_meeting_in_order_and_again_after_a_restart(
    tmp_path: Path,
) -> None:
    async with run_server(tmp_path / "data") as server:
        s = await server.new_session(title="Replayed")
        versions = await play(server, s)
        live = await history(server, s.tokens["owner"], s.id)
        check_meeting(live, versions)
        assert {e["from"] for e in live["events"][1:]} == {"log"}
    async with run_server(tmp_path / "data") as server:
        again = await history(server, s.tokens["owner"], s.id)
        assert again["events"] == live["events"]


def compact(data: Path, session_id: str) -> None:
    """Fold a stopped server's whole log into its snapshot, as compaction does."""
    with sqlite3.connect(data / "proofroom.sqlite3") as db:
        tail = [
            bytes(row[0])
            for row in db.execute(
                "SELECT data FROM doc_updates WHERE session_id = ? ORDER BY id", (session_id,)
            )
        ]
        snap = db.execute(
            "SELECT data FROM doc_snapshots WHERE session_id = ?", (session_id,)
        ).fetchone()
        merged = merge_updates(*([bytes(snap[0])] if snap else []), *tail)
        db.execute(
            "INSERT INTO doc_snapshots (session_id, data, updated_at) VALUES (?, ?, 0)"
            " ON CONFLICT (session_id) DO UPDATE SET data = excluded.data",
            (session_id, merged),
        )
        db.execute("DELETE FROM doc_updates WHERE session_id = ?", (session_id,))


async def test_the_replay_survives_compaction(tmp_path: Path) -> None:
    """Folded into the snapshot, the history is told from the times the document keeps."""
    async with run_server(tmp_path / "data") as server:
        s = await server.new_session(title="Compacted")
        versions = await play(server, s)
    compact(tmp_path / "data", s.id)
    async with run_server(tmp_path / "data") as server:
        body = await history(server, ADMIN_TOKEN, s.id)
    assert body["updates"] == 0
    assert {e["from"] for e in body["events"]} == {"snapshot"}
    check_meeting(body, versions, told=True)


@pytest.mark.parametrize("role", ["viewer", "commenter", "editor", "approver"])
async def test_only_owners_and_the_admin_replay_a_session(server: RunningServer, role: str) -> None:
    s = await server.new_session(title="Private history")
    other = await server.new_session(title="Another")
    with pytest.raises(ApiError) as refused:
        await history(server, s.tokens[role], s.id)
    assert refused.value.status == 403
    with pytest.raises(ApiError) as foreign:
        await history(server, other.tokens["owner"], s.id)
    assert foreign.value.status == 403
    with pytest.raises(ApiError) as anonymous:
        await history(server, "pr_not_a_token", s.id)
    assert anonymous.value.status == 401
    with pytest.raises(ApiError) as missing:
        await history(server, ADMIN_TOKEN, "s_nope")
    assert missing.value.status == 404
    assert (await history(server, ADMIN_TOKEN, s.id))["events"][0]["kind"] == ("session.created")


async def test_the_event_log_downloads_as_a_json_file(server: RunningServer) -> None:
    s = await server.new_session(title="Download")
    async with ApiClient(server.url, s.tokens["owner"]) as owner:
        response = await owner.request("GET", f"/api/sessions/{s.id}/replay?download=1")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert f'filename="proofroom-{s.id}-events.json"' in response.headers["content-disposition"]


async def test_the_replay_is_computed_off_the_event_loop(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long log is CPU work: while one replay runs, another room goes on (test_offloop)."""
    s = await server.new_session(title="Long history")
    hold = Hold()
    monkeypatch.setattr(replay_module, "replay", hold.wrap(replay_module.replay))
    body = await run_while_held(server, hold, lambda: history(server, ADMIN_TOKEN, s.id))
    assert body["events"][0]["kind"] == "session.created"
