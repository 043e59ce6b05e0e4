"""A role link is a door, not a person: whoever opens it joins under their own name.

Everything here runs against the real server: people join a link over HTTP, write over the
websocket with real pycrdt clients, and the tests read what every observer sees (the other
person's client, the server's document, the participants list, the audit log, the export).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from proofroom.client import ApiClient, ApiError, SessionClient
from proofroom.client.api import join
from proofroom.server.store.db import Database
from proofroom.server.store.migrations import MIGRATIONS
from proofroom.server.store.records import InviteKind, Records
from proofroom.shared.protocol import CloseCode

from .helpers import ADMIN_TOKEN, ReviewSession, RunningServer, png_bytes, run_server
from .review_steps import decide, upload_version, wait_for_pin


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def two_on_one_link(
    server: RunningServer, session: ReviewSession, role: str = "commenter"
) -> tuple[dict[str, str], dict[str, str]]:
    link = session.links[role]
    return await server.join(link, "Ana"), await server.join(link, "Ben", "ben@example.com")


# -- joining ------------------------------------------------------------------------------


async def test_two_people_on_one_link_are_two_participants(
    server: RunningServer, session: ReviewSession
) -> None:
    ana, ben = await two_on_one_link(server, session)
    assert ana["user_id"] != ben["user_id"] and ana["token"] != ben["token"]
    assert (ana["role"], ana["session"], ana["name"], ana["email"]) == (
        "commenter",
        session.id,
        "Ana",
        None,
    )
    assert ben["email"] == "ben@example.com"
    assert ana["url"] == f"{server.url}/s/{session.id}?token={ana['token']}"
    async with server.api(ben["token"]) as api:
        me = await api.whoami()
    assert (me["user_id"], me["name"], me["role"]) == (ben["user_id"], "Ben", "commenter")
    assert me["email"] == "ben@example.com"

    async with (
        server.client(session.id, ana["token"]) as a,
        server.client(session.id, ben["token"]) as b,
    ):
        a.add_pin("pa", x=4, y=4, text="Ana's pin", author=ana["user_id"])
        await b.wait_for(lambda: "pa" in b.pins)
        b.reply("pa", "cb", text="Ben agrees", author=ben["user_id"])
        b.add_pin("pb", x=8, y=8, text="Ben's pin", author=ben["user_id"])
        await a.wait_for(lambda: "pb" in a.pins and len(a.pins["pa"]["thread"]) == 1)
        room = server.services.rooms.rooms[session.id]
        await wait_for_pin(server, session.id, "pb")
        assert room.pins["pa"]["author"] == ana["user_id"]
        assert room.pins["pb"]["author"] == ben["user_id"]
        assert room.pins["pa"]["thread"][0]["author"] == ben["user_id"]

        # One person cannot edit the other's reply: the guard refuses it, nobody sees it.
        a.pins["pa"]["thread"][0]["text"] = "Ben takes it back"
        await a.wait_for(lambda: a.denied, timeout=5)
        assert "only a comment's author may change it" in "; ".join(a.denied)
        await a.wait_for(lambda: a.state() == b.state())
        assert room.pins["pa"]["thread"][0]["text"] == "Ben agrees"
        assert b.pins["pa"]["thread"][0]["text"] == "Ben agrees"
        assert b.denied == []

    people = (await server.admin.json("GET", f"/api/sessions/{session.id}/participants"))[
        "participants"
    ]
    assert people[ana["user_id"]] == {"name": "Ana", "role": "commenter", "active": True}
    assert people[ben["user_id"]] == {"name": "Ben", "role": "commenter", "active": True}
    # People, not links: nobody in the list is a link.
    assert not any(p["name"].endswith(" link") for p in people.values())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "name is required"),
        ({"name": "   "}, "name is required"),
        ({"name": "x" * 81}, "1 to 80 characters"),
        ({"name": 7}, "name is required"),
        ({"name": "Two\nlines"}, "printable"),
        ({"name": "Ana", "email": "not-an-address"}, "email"),
        ({"name": "Ana", "email": 3}, "email"),
        ({"name": "Ana", "role": "owner"}, "allowed: email, name"),
    ],
)
async def test_bad_join_requests_are_400(
    server: RunningServer, session: ReviewSession, body: dict[str, object], expected: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        before = await server.admin.json("GET", f"/api/sessions/{session.id}/participants")
        response = await http.post(
            "/api/join", json=body, headers=bearer(session.links["commenter"])
        )
        assert response.status_code == 400, response.text
        assert expected in response.json()["error"]["message"]
        after = await server.admin.json("GET", f"/api/sessions/{session.id}/participants")
    assert after == before


async def test_a_name_is_trimmed_and_may_be_80_characters(
    server: RunningServer, session: ReviewSession
) -> None:
    joined = await server.join(session.links["viewer"], "  Ana  ")
    assert joined["name"] == "Ana"
    long = await server.join(session.links["viewer"], "é" * 80)
    assert long["name"] == "é" * 80


async def test_a_person_or_the_admin_cannot_join_again(
    server: RunningServer, session: ReviewSession
) -> None:
    named = await server.admin.create_invite(session.id, "editor", "Nia")
    for token in (session.tokens["commenter"], named["token"], ADMIN_TOKEN):
        async with server.api(token) as api:
            with pytest.raises(ApiError) as refused:
                await api.join("Again")
        assert (refused.value.status, refused.value.code) == (403, "not_a_link")


async def test_the_link_token_is_refused_everywhere_but_join(
    server: RunningServer, session: ReviewSession
) -> None:
    link = session.links["owner"]
    base = session.created["base"]
    paths = [
        "/api/whoami",
        "/api/sessions",
        f"/api/sessions/{session.id}",
        f"/api/sessions/{session.id}/participants",
        f"/api/sessions/{session.id}/invites",
        f"/api/sessions/{session.id}/audit",
        f"/api/sessions/{session.id}/export.json",
        f"/blobs/{base}",
        f"/api/events?session={session.id}",
    ]
    async with httpx.AsyncClient(base_url=server.url) as http:
        for path in paths:
            for response in (
                await http.get(path, headers=bearer(link)),
                await http.get(path, params={"token": link}),
            ):
                assert response.status_code == 401, (path, response.text)
                error = response.json()["error"]
                assert error["code"] == "join_required" and "join first" in error["message"]
        refused = await http.post(
            f"/api/sessions/{session.id}/invites",
            json={"role": "viewer", "name": "Sneaky"},
            headers=bearer(link),
        )
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "join_required"
    client = server.client(session.id, link)
    with pytest.raises(ConnectionError):
        await client.connect()
    assert client.closed is not None
    assert client.closed[0] == CloseCode.UNAUTHORIZED and "join first" in client.closed[1]
    # The same link still lets a person in: it is a door, not spent by use.
    person = await server.join(link, "Olu")
    async with server.client(session.id, person["token"]) as olu:
        assert olu.meta["title"] == "Test review"


async def test_the_python_client_joins_from_a_link(
    server: RunningServer, session: ReviewSession
) -> None:
    joined = await join(session.created["links"]["editor"], "Eli", "eli@example.com")
    assert (joined.base_url, joined.session_id) == (server.url, session.id)
    assert (joined.info["name"], joined.info["role"]) == ("Eli", "editor")
    async with SessionClient(joined.base_url, joined.session_id, joined.token) as client:
        assert client.meta["title"] == "Test review"
    # A named invite's link is already a person: join hands it back as it is.
    named = await server.admin.create_invite(session.id, "viewer", "Vic")
    again = await join(named["url"], "ignored")
    assert again.token == named["token"] and again.info["name"] == "Vic"


# -- links ending ------------------------------------------------------------------------------


async def test_revoking_a_link_closes_everyone_who_joined_it(
    server: RunningServer, session: ReviewSession
) -> None:
    link = await server.admin.create_invite(session.id, "commenter", kind="link")
    assert (link["kind"], link["name"]) == ("link", "Commenter link")
    ana, ben = await server.join(link["token"], "Ana"), await server.join(link["token"], "Ben")
    other = await server.join(session.links["commenter"], "Cleo")  # another link: untouched
    async with (
        server.client(session.id, ana["token"]) as a,
        server.client(session.id, ben["token"]) as b,
        server.client(session.id, other["token"]) as c,
    ):
        await server.admin.revoke_invite(session.id, link["id"])
        for client in (a, b):
            await client.wait_for(lambda client=client: client.closed is not None)
            assert client.closed == (CloseCode.FORBIDDEN, "this invite was revoked")
        assert c.connected
    for token in (ana["token"], ben["token"], link["token"]):
        async with server.api(token) as api:
            with pytest.raises(ApiError) as refused:
                await api.whoami()
        assert refused.value.status == 403
    async with server.api(other["token"]) as api:
        assert (await api.whoami())["name"] == "Cleo"
    people = (await server.admin.json("GET", f"/api/sessions/{session.id}/participants"))[
        "participants"
    ]
    assert people[ana["user_id"]]["active"] is False and people[other["user_id"]]["active"]


async def test_an_expiring_link_closes_its_people_at_expiry(
    server: RunningServer, session: ReviewSession
) -> None:
    link = await server.admin.create_invite(session.id, "commenter", expires_in=1.5, kind="link")
    ana, ben = await server.join(link["token"], "Ana"), await server.join(link["token"], "Ben")
    async with server.api(ana["token"]) as api:
        assert (await api.whoami())["expires_at"] == pytest.approx(link["expires_at"])
    a = server.client(session.id, ana["token"])
    b = server.client(session.id, ben["token"])
    await a.connect()
    await b.connect()
    try:
        a.add_pin("before", x=1, y=1, text="in time", author=ana["user_id"])
        await wait_for_pin(server, session.id, "before")
        # Nothing is sent from here on: the server itself must end both sockets.
        for client in (a, b):
            await client.wait_for(lambda client=client: client.closed is not None, timeout=10)
            assert client.closed == (CloseCode.UNAUTHORIZED, "this invite has expired")
        assert time.time() >= link["expires_at"]
    finally:
        await a.disconnect()
        await b.disconnect()
    for token in (ana["token"], ben["token"]):
        async with server.api(token) as api:
            with pytest.raises(ApiError) as refused:
                await api.whoami()
        assert (refused.value.status, refused.value.message) == (401, "this invite has expired")


async def test_a_named_invite_that_expires_is_closed_too(
    server: RunningServer, session: ReviewSession
) -> None:
    named = await server.admin.create_invite(session.id, "commenter", "Nia", expires_in=1.0)
    async with server.client(session.id, named["token"]) as client:
        await client.wait_for(lambda: client.closed is not None, timeout=10)
        assert client.closed == (CloseCode.UNAUTHORIZED, "this invite has expired")


# -- names wherever a person is recorded ------------------------------------------------------


async def test_audit_and_export_name_the_people(
    server: RunningServer, session: ReviewSession
) -> None:
    eli = await server.join(session.links["editor"], "Eli")
    ada = await server.join(session.links["approver"], "Ada")
    async with server.client(session.id, eli["token"]) as client:
        client.add_pin("p1", x=5, y=5, text="fix this", author=eli["user_id"])
        await wait_for_pin(server, session.id, "p1")
    async with ApiClient(server.url, eli["token"]) as editor:
        layer = await upload_version(editor, session.id, "p1", (0, 90, 0))
    async with ApiClient(server.url, ada["token"]) as approver:
        await decide(approver, session.id, layer, "approve", "good")
    await server.admin.export_png(session.id)
    sidecar = await server.admin.export_json(session.id)
    [made] = sidecar["layers"]
    assert (made["author"], made["author_name"]) == (eli["user_id"], "Eli")
    assert made["approved_by"] == [ada["user_id"]]
    assert [(a["user"], a["name"], a["note"]) for a in made["approvals"]] == [
        (ada["user_id"], "Ada", "good")
    ]

    events = (await server.admin.json("GET", f"/api/sessions/{session.id}/audit"))["events"]
    named = {(e["action"], e["actor"], e["actor_name"]) for e in events}
    assert ("participant.join", eli["user_id"], "Eli") in named
    assert ("participant.join", ada["user_id"], "Ada") in named
    assert ("layer.upload", eli["user_id"], "Eli") in named
    assert ("layer.decision", ada["user_id"], "Ada") in named
    assert ("session.export", "admin", "Admin") in named
    assert all(e["actor_name"] for e in events)


async def test_presence_carries_the_real_name_whatever_the_client_claims(
    server: RunningServer, session: ReviewSession
) -> None:
    ana, ben = await two_on_one_link(server, session)
    async with (
        server.client(session.id, ana["token"]) as a,
        server.client(session.id, ben["token"]) as b,
    ):
        await a.set_awareness(
            {"user": {"id": "admin", "name": "Olga Owner", "role": "owner", "color": "#f00"}}
        )
        await b.set_awareness({"user": {"name": "Ben"}, "cursor": [1, 2]})
        await b.wait_for(lambda: any("user" in s for s in b.peers.values()))
        await a.wait_for(lambda: any("user" in s for s in a.peers.values()))
        [seen_by_b] = [s["user"] for s in b.peers.values() if "user" in s]
        [seen_by_a] = [s["user"] for s in a.peers.values() if "user" in s]
    assert seen_by_b == {"id": ana["user_id"], "name": "Ana", "role": "commenter", "color": "#f00"}
    assert seen_by_a == {"id": ben["user_id"], "name": "Ben", "role": "commenter"}


# -- existing data ------------------------------------------------------------------------------


async def test_existing_share_links_become_links(tmp_path: Path) -> None:
    """A data dir from before people: the five links made with each session turn into links
    (their tokens now only join), named invites stay one person's, and the audit log reads."""
    data = tmp_path / "data"
    data.mkdir()
    old = sqlite3.connect(data / "proofroom.sqlite3")
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        old.executescript(
            f"BEGIN;\n{script}\nINSERT INTO schema_version VALUES ({number});\nCOMMIT;"
        )
    from proofroom.server.auth import hash_token

    old.execute(
        "INSERT INTO sessions VALUES ('s1', 'Old', 64, 48, 'b', 1.0, 'admin', 1)",
    )
    rows = [
        ("i_link", "commenter", "Commenter link", hash_token("pr_old_link")),
        ("i_named", "editor", "Nia", hash_token("pr_old_named")),
    ]
    for invite_id, role, name, digest in rows:
        old.execute(
            "INSERT INTO invites VALUES (?, 's1', ?, ?, ?, 1.0, 'admin', NULL, NULL)",
            (invite_id, role, name, digest),
        )
    old.execute(
        "INSERT INTO audit (session_id, at, actor, action) VALUES ('s1', 2.0, 'u_i_named', 'x')"
    )
    old.commit()
    old.close()
    database_path = data / "proofroom.sqlite3"
    async with Database(database_path) as db:
        records = Records(db)
        kinds = {i.id: i.kind for i in await records.list_invites("s1")}
        assert kinds == {"i_link": InviteKind.LINK, "i_named": InviteKind.PERSONAL}
        [event] = await records.audit_events("s1")
        assert (event["actor"], event["actor_name"]) == ("u_i_named", "Nia")


async def test_an_old_link_token_joins_after_the_upgrade(tmp_path: Path) -> None:
    async with run_server(tmp_path / "data") as server:
        created = await server.admin.create_session(png_bytes(), title="Before")
    # Simulate the data of a server from before migration 6: every invite a personal one.
    db = sqlite3.connect(tmp_path / "data" / "proofroom.sqlite3")
    db.execute("UPDATE invites SET kind = 'personal'")
    # ... and undo what every later migration added, so that all of them run again.
    db.execute("DELETE FROM schema_version WHERE version >= 6")
    db.execute("DROP TABLE doc_clients")  # 7
    db.execute("ALTER TABLE producer_layers DROP COLUMN fix")  # 8
    db.execute("DROP INDEX jobs_lane")  # 9
    for column in ("kind", "engine", "lane"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.execute("DROP TABLE producer_revisions")  # 10
    for column in ("revisions", "approved_revisions"):
        db.execute(f"ALTER TABLE producer_sessions DROP COLUMN {column}")
    db.execute("DROP TABLE participants")
    db.execute("ALTER TABLE invites DROP COLUMN kind")
    db.execute("ALTER TABLE audit DROP COLUMN actor_name")
    db.commit()
    db.close()
    async with run_server(tmp_path / "data") as server:
        link = created["links"]["commenter"].split("token=")[1]
        async with server.api(link) as api:
            with pytest.raises(ApiError) as refused:
                await api.whoami()
            assert refused.value.code == "join_required"
            person = await api.join("Late Larry")
        async with server.api(person["token"]) as api:
            assert (await api.whoami())["name"] == "Late Larry"


async def test_get_join_says_what_a_token_is_without_acting(
    server: RunningServer, session: ReviewSession
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        link = await http.get("/api/join", headers=bearer(session.links["approver"]))
        person = await http.get("/api/join", headers=bearer(session.tokens["approver"]))
        admin = await http.get("/api/join", headers=bearer(ADMIN_TOKEN))
        unknown = await http.get("/api/join", headers=bearer("pr_nobody"))
    assert link.json() == {"link": True, "role": "approver", "session": session.id}
    assert person.json() == {"link": False, "role": "approver", "session": session.id}
    assert admin.json() == {"link": False, "role": "owner", "session": None}
    assert unknown.status_code == 401
    before = await server.admin.json("GET", f"/api/sessions/{session.id}/participants")
    assert len(before["participants"]) == 6  # the five who joined, and the admin
