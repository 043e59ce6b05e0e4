"""Audit rows commit with the change they record (issue 10 item 12).

A trigger in the real SQLite file makes the audit insert of one action fail: the change it
records must not happen either (not for a client in the room, not for a newcomer, not in
the log after a restart). Without the trigger, both are there, before and after a restart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proofroom.client import ApiClient, ApiError

from .helpers import ReviewSession, RunningServer, decode, encode_png, eventually, run_server

#: What each action does, and how to see whether it happened in a session's document.
Check = Callable[[dict[str, Any]], bool]


def fail_audits_of(data: Path, action: str) -> None:
    with sqlite3.connect(data / "proofroom.sqlite3") as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_audit BEFORE INSERT ON audit WHEN NEW.action = '{action}'"
            " BEGIN SELECT RAISE(ABORT, 'the audit log is unavailable'); END"
        )


async def prepare(server: RunningServer, session: ReviewSession) -> str:
    """A pin and one uploaded version to decide on; returns the version's layer id."""
    async with server.client(session.id, session.tokens["editor"]) as editor:
        editor.add_pin("p", x=5, y=5, text="warmer", author=session.users["editor"])
        await editor.flush()
        await eventually(lambda: "p" in server.services.rooms.rooms[session.id].pins)
    return await upload(server, session)


async def upload(server: RunningServer, session: ReviewSession) -> str:
    base = decode(await server.admin.blob(session.created["base"]))
    changed = base.copy()
    changed[10:20, 10:20] = (0, 0, np.random.default_rng().integers(0, 255))
    async with ApiClient(server.url, session.tokens["editor"]) as api:
        reply = await api.json(
            "POST",
            f"/api/sessions/{session.id}/pins/p/versions",
            files={"image": ("v.png", encode_png(changed))},
        )
    return str(reply["layer"])


async def decide(server: RunningServer, session: ReviewSession) -> Any:
    room = server.services.rooms.rooms[session.id]
    [layer_id] = [lay.get("id") for lay in room.layers]
    async with ApiClient(server.url, session.tokens["approver"]) as api:
        return await api.json(
            "POST",
            f"/api/sessions/{session.id}/layers/{layer_id}/decision",
            json={"decision": "approve"},
        )


async def lock(server: RunningServer, session: ReviewSession) -> Any:
    async with ApiClient(server.url, session.tokens["owner"]) as api:
        return await api.json(
            "PUT", f"/api/sessions/{session.id}/locks", json={"locks": [[30, 30, 10, 10]]}
        )


async def require_two(server: RunningServer, session: ReviewSession) -> Any:
    async with ApiClient(server.url, session.tokens["owner"]) as api:
        return await api.json(
            "PATCH", f"/api/sessions/{session.id}/settings", json={"required_approvals": 2}
        )


def approved(doc: dict[str, Any]) -> bool:
    return any(lay["state"] == "approved" for lay in doc["layers"])


def locked(doc: dict[str, Any]) -> bool:
    return bool(doc["meta"].get("locks"))


def two_layers(doc: dict[str, Any]) -> bool:
    return len(doc["layers"]) == 2


ACTIONS: dict[str, tuple[str, Callable[[RunningServer, ReviewSession], Awaitable[Any]], Check]] = {
    "decision": ("layer.decision", decide, approved),
    "locks": ("session.locks", lock, locked),
    "upload": ("layer.upload", upload, two_layers),
}


async def newcomer_state(server: RunningServer, session: ReviewSession) -> dict[str, Any]:
    async with server.client(session.id, session.tokens["viewer"]) as viewer:
        return viewer.state()


async def audited(server: RunningServer, session: ReviewSession, action: str) -> int:
    events = await server.services.records.audit_events(session.id)
    return sum(1 for e in events if e["action"] == action)


@pytest.mark.parametrize("name", sorted(ACTIONS))
async def test_a_change_whose_audit_row_fails_does_not_happen(tmp_path: Path, name: str) -> None:
    action, act, happened = ACTIONS[name]
    data = tmp_path / "data"
    async with run_server(data) as server:
        session = await server.new_session()
        await prepare(server, session)
        before = await audited(server, session, action)
        async with server.client(session.id, session.tokens["viewer"]) as watcher:
            assert not happened(watcher.state())
            fail_audits_of(data, action)
            with pytest.raises(ApiError) as err:
                await act(server, session)
            assert err.value.status == 503, err.value.message
            # The one in the room never saw it, and a newcomer does not either.
            assert not happened(watcher.state())
        assert not happened(await newcomer_state(server, session))
        assert await audited(server, session, action) == before
    async with run_server(data) as server:
        assert not happened(await newcomer_state(server, session))
        assert await audited(server, session, action) == before


@pytest.mark.parametrize("name", sorted(ACTIONS))
async def test_a_change_and_its_audit_row_are_both_kept(tmp_path: Path, name: str) -> None:
    action, act, happened = ACTIONS[name]
    data = tmp_path / "data"
    async with run_server(data) as server:
        session = await server.new_session()
        await prepare(server, session)
        before = await audited(server, session, action)
        async with server.client(session.id, session.tokens["viewer"]) as watcher:
            await act(server, session)
            await watcher.wait_for(lambda: happened(watcher.state()))
        assert await audited(server, session, action) == before + 1
    async with run_server(data) as server:
        assert happened(await newcomer_state(server, session))
        assert await audited(server, session, action) == before + 1


async def test_a_settings_change_whose_audit_row_fails_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with run_server(data) as server:
        session = await server.new_session()
        await prepare(server, session)
        await decide(server, session)  # approved with one approval
        fail_audits_of(data, "session.update")
        with pytest.raises(ApiError) as err:
            await require_two(server, session)
        assert err.value.status == 503
        assert approved(await newcomer_state(server, session))
    async with run_server(data) as server:
        record = await server.services.records.get_session(session.id)
        assert record is not None and record.required_approvals == 1
        assert approved(await newcomer_state(server, session))
        assert await audited(server, session, "session.update") == 0
        with sqlite3.connect(data / "proofroom.sqlite3") as conn:
            conn.execute("DROP TRIGGER refuse_audit")
        reply = await require_two(server, session)
        assert [c["state"] for c in reply["changed"]] == ["pending"]
    async with run_server(data) as server:
        record = await server.services.records.get_session(session.id)
        assert record is not None and record.required_approvals == 2
        assert not approved(await newcomer_state(server, session))
        [row] = [
            e
            for e in await server.services.records.audit_events(session.id)
            if e["action"] == "session.update"
        ]
        assert json.loads(json.dumps(row["detail"])) == {"required_approvals": 2}
