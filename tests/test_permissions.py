"""The role x action table (DESIGN.md section 5), every cell, over HTTP and over CRDT writes.

The expectations are written out here, cell by cell, on purpose: a change in the server's
table must make this file fail. The five roles are people who joined the session's role
links (a link is a door, not a person); the link's own token is a row of its own, good only
for joining, and so are people whose link was revoked or has expired. One server and two
sessions serve the whole module (one for HTTP, one for document writes, so background jobs
never touch the document under test); each case prepares the fresh pins, jobs, layers or
invites it consumes.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from pycrdt import Array, Map

from proofroom.client import SessionClient
from proofroom.server.rooms import Room
from proofroom.shared.protocol import CloseCode

from .helpers import (
    ADMIN_TOKEN,
    PEOPLE,
    RunningServer,
    encode_png,
    eventually,
    join_session,
    png_bytes,
    run_server,
)
from .images import sized

ROLE_NAMES = PEOPLE

#: The async tests share the module's event loop, where its one server runs.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

#: Who knocks: a person per role (each joined that role's link), the admin token, the
#: commenter link's own token, and tokens that must not work.
WHO = (
    "viewer",
    "commenter",
    "editor",
    "approver",
    "owner",
    "admin",
    "link",  # the commenter link itself: good only for joining
    "other_session",  # the owner of another session (joined through its owner link)
    "revoked",  # a named owner invite of this session, revoked
    "expired",  # a named owner invite of this session, expired
    "joined_revoked",  # a person who joined an owner link that was then revoked
    "joined_expired",  # a person who joined an owner link that has since expired
    "no_token",
    "bad_token",
)

# fmt: off
#: Expected HTTP status per action, in the order of WHO.
HTTP_TABLE: dict[str, tuple[int, ...]] = {
    #                 view comm edit appr ownr admn link othr revk expd jrev jexp none bad
    "join":           (403, 403, 403, 403, 403, 403, 201, 403, 403, 401, 403, 401, 401, 401),
    "get_session":    (200, 200, 200, 200, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "whoami":         (200, 200, 200, 200, 200, 200, 401, 200, 403, 401, 403, 401, 401, 401),
    "participants":   (200, 200, 200, 200, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "create_invite":  (403, 403, 403, 403, 201, 201, 401, 403, 403, 401, 403, 401, 401, 401),
    "list_invites":   (403, 403, 403, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "revoke_invite":  (403, 403, 403, 403, 204, 204, 401, 403, 403, 401, 403, 401, 401, 401),
    "fix":            (403, 403, 202, 403, 202, 202, 401, 403, 403, 401, 403, 401, 401, 401),
    "cancel_job":     (403, 403, 200, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "upload_version": (403, 403, 201, 403, 201, 201, 401, 403, 403, 401, 403, 401, 401, 401),
    "decide":         (403, 403, 403, 200, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "set_locks":      (403, 403, 403, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "settings":       (403, 403, 403, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "export_png":     (403, 403, 403, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "export_json":    (403, 403, 403, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "audit":          (403, 403, 403, 403, 200, 200, 401, 403, 403, 401, 403, 401, 401, 401),
    "create_session": (403, 403, 403, 403, 403, 201, 401, 403, 403, 401, 403, 401, 401, 401),
}

#: Who may write the document at all (websocket join): the close code when refused.
CONNECT_TABLE: dict[str, int | None] = {
    "viewer": None, "commenter": None, "editor": None, "approver": None, "owner": None,
    "admin": None,
    "link": CloseCode.UNAUTHORIZED,
    "other_session": CloseCode.FORBIDDEN, "revoked": CloseCode.FORBIDDEN,
    "expired": CloseCode.UNAUTHORIZED,
    "joined_revoked": CloseCode.FORBIDDEN, "joined_expired": CloseCode.UNAUTHORIZED,
    "no_token": CloseCode.UNAUTHORIZED, "bad_token": CloseCode.UNAUTHORIZED,
}

WRITERS = ("viewer", "commenter", "editor", "approver", "owner", "admin")
OK, REVERT, READ_ONLY = "ok", "revert", "read-only"

#: Outcome of each document write per role, in the order of WRITERS.
CRDT_TABLE: dict[str, tuple[str, ...]] = {
    #                         viewer     comm    edit    appr    owner   admin
    "add_own_pin":           (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "reply_to_other_pin":    (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "edit_own_pin_text":     (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "move_own_pin":          (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "resolve_own_pin":       (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "reopen_own_pin":        (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "edit_own_comment":      (READ_ONLY, OK,     OK,     OK,     OK,     OK),
    "add_pin_as_other":      (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "reply_as_other":        (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "edit_other_pin":        (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "resolve_other_pin":     (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "edit_other_comment":    (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "delete_own_pin":        (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "link_own_pin_to_layer": (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "write_meta":            (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "write_layers":          (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
    "write_jobs":            (READ_ONLY, REVERT, REVERT, REVERT, REVERT, REVERT),
}
# fmt: on

#: Part of the permission-denied reason each reverted write must carry.
REVERT_REASONS = {
    "add_pin_as_other": "a pin's author must be its writer",
    "reply_as_other": "a comment's author must be its writer",
    "edit_other_pin": "only a pin's author may change it",
    "resolve_other_pin": "only a pin's author may change it",
    "edit_other_comment": "only a comment's author may change it",
    "delete_own_pin": "never replaced or deleted",
    "link_own_pin_to_layer": "'layers' of a pin cannot be changed",
    "write_meta": "'meta' is written by the server only",
    "write_layers": "'layers' is written by the server only",
    "write_jobs": "'jobs' is written by the server only",
}

FIX_REGION = [30, 20, 24, 18]
MARKER = "marker"


def test_the_tables_cover_every_action_and_identity() -> None:
    assert all(len(row) == len(WHO) for row in HTTP_TABLE.values())
    assert all(len(row) == len(WRITERS) for row in CRDT_TABLE.values())
    assert set(CONNECT_TABLE) == set(WHO)
    assert set(HTTP_ACTIONS) == set(HTTP_TABLE)
    assert set(CRDT_ACTIONS) == set(CRDT_TABLE)
    assert {a for a, row in CRDT_TABLE.items() if REVERT in row} == set(REVERT_REASONS)


# -- the world: one server, two sessions ---------------------------------------------------


def room_state(room: Room) -> dict[str, Any]:
    return {
        "meta": room.meta.to_py(),
        "pins": room.pins.to_py(),
        "layers": room.layers.to_py(),
        "jobs": room.jobs.to_py(),
        "revisions": room.revisions.to_py(),
    }


def without_marker(state: dict[str, Any]) -> dict[str, Any]:
    pins = {k: v for k, v in (state["pins"] or {}).items() if k != MARKER}
    return {**state, "pins": pins}


@dataclass
class World:
    server: RunningServer
    http: httpx.AsyncClient
    #: The session the HTTP cases act on, and the one the document cases write to.
    sid: str
    crdt_sid: str
    #: Token per identity of WHO, for each session (None: no token).
    tokens: dict[str, str | None]
    crdt_tokens: dict[str, str | None]
    #: User id per role, for each session.
    users: dict[str, str]
    crdt_users: dict[str, str]
    #: A commenter invite in each session who owns the pins that are "someone else's".
    helper: SessionClient
    helper_user: str
    crdt_helper: SessionClient
    crdt_helper_user: str
    base: np.ndarray
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def next(self) -> int:
        return next(self.counter)

    async def room(self, sid: str | None = None) -> Room:
        return await self.server.services.rooms.acquire(sid or self.sid)

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens[who]
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(
            method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs
        )
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def changed_copy(self, k: int) -> bytes:
        """The base with one small block painted a colour of its own."""
        pixels = self.base.copy()
        x, y = 4 + (k * 7) % 60, 40 + (k * 3) % 20
        pixels[y : y + 6, x : x + 6] = ((k * 37) % 256, (k * 91 + 50) % 256, (k * 13 + 7) % 256)
        return encode_png(pixels)


async def session_with_tokens(
    server: RunningServer, image: bytes, title: str
) -> tuple[str, dict[str, str | None], dict[str, str]]:
    created = await server.admin.create_session(image, title=title)
    joined = await join_session(server.url, created)
    tokens: dict[str, str | None] = {**joined.tokens}
    users = {**joined.users}
    tokens["admin"] = ADMIN_TOKEN
    users["admin"] = "admin"
    tokens["link"] = joined.links["commenter"]
    return created["id"], tokens, users


async def joined_then_ended(server: RunningServer, sid: str) -> tuple[str, str]:
    """Tokens of two people who joined owner links: one link revoked, one expired since."""
    doomed = await server.admin.create_invite(sid, "owner", kind="link")
    revoked = await server.join(doomed["token"], "Ruth")
    await server.admin.revoke_invite(sid, doomed["id"])
    brief = await server.admin.create_invite(sid, "owner", expires_in=0.3, kind="link")
    expired = await server.join(brief["token"], "Eve")
    # Wait out the link's own deadline (a time the server was told, not a race).
    await asyncio.sleep(max(0.0, brief["expires_at"] - time.time()) + 0.02)
    return revoked["token"], expired["token"]


async def helper_client(
    server: RunningServer, sid: str, pins: dict[str, list[float] | None]
) -> tuple[SessionClient, str]:
    invite = await server.admin.create_invite(sid, "commenter", "Helper")
    async with server.api(invite["token"]) as api:
        user = (await api.whoami())["user_id"]
    client = server.client(sid, invite["token"])
    await client.connect()
    for pin_id, region in pins.items():
        client.add_pin(
            pin_id, x=10, y=10, text=f"{pin_id} by the helper", author=user, region=region
        )
    room = await server.services.rooms.acquire(sid)
    await eventually(lambda: all(p in room.pins for p in pins))
    return client, user


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    data: Path = tmp_path_factory.mktemp("permissions") / "data"
    async with run_server(data) as server:
        base = sized("astronaut", 96, 72)
        sid, tokens, users = await session_with_tokens(server, encode_png(base), "HTTP")
        crdt_sid, crdt_tokens, crdt_users = await session_with_tokens(
            server, png_bytes(64, 48), "CRDT"
        )
        revoked = await server.admin.create_invite(sid, "owner", "Revoked")
        await server.admin.revoke_invite(sid, revoked["id"])
        expired = await server.admin.create_invite(sid, "owner", "Expired", expires_in=0.05)
        crdt_revoked = await server.admin.create_invite(crdt_sid, "owner", "Revoked")
        await server.admin.revoke_invite(crdt_sid, crdt_revoked["id"])
        crdt_expired = await server.admin.create_invite(crdt_sid, "owner", "Expired", 0.05)
        joined_revoked, joined_expired = await joined_then_ended(server, sid)
        crdt_joined_revoked, crdt_joined_expired = await joined_then_ended(server, crdt_sid)
        extra = {"no_token": None, "bad_token": "pr_not_a_real_token"}
        tokens.update(
            other_session=crdt_tokens["owner"],
            revoked=revoked["token"],
            expired=expired["token"],
            joined_revoked=joined_revoked,
            joined_expired=joined_expired,
            **extra,
        )
        crdt_tokens.update(
            other_session=tokens["owner"],
            revoked=crdt_revoked["token"],
            expired=crdt_expired["token"],
            joined_revoked=crdt_joined_revoked,
            joined_expired=crdt_joined_expired,
            **extra,
        )
        helper, helper_user = await helper_client(
            server, sid, {"fixpin": FIX_REGION, "uploadpin": None, "decidepin": None}
        )
        crdt_helper, crdt_helper_user = await helper_client(server, crdt_sid, {MARKER: None})
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                yield World(
                    server=server,
                    http=http,
                    sid=sid,
                    crdt_sid=crdt_sid,
                    tokens=tokens,
                    crdt_tokens=crdt_tokens,
                    users=users,
                    crdt_users=crdt_users,
                    helper=helper,
                    helper_user=helper_user,
                    crdt_helper=crdt_helper,
                    crdt_helper_user=crdt_helper_user,
                    base=base,
                )
        finally:
            await helper.disconnect()
            await crdt_helper.disconnect()


# -- HTTP: each action, with its preparation and a check of its effect ---------------------


async def people(w: World) -> dict[str, Any]:
    found: dict[str, Any] = await w.admin("GET", f"/api/sessions/{w.sid}/participants")
    return found["participants"]


async def join(w: World, who: str) -> Outcome:
    before = await people(w)
    name = f"{who} guest"
    response = await w.http.post("/api/join", json={"name": name}, headers=w.headers(who))

    async def check(allowed: bool) -> None:
        after = await people(w)
        if not allowed:
            assert after == before
            return
        made = response.json()
        assert set(after) - set(before) == {made["user_id"]}
        assert after[made["user_id"]] == {"name": name, "role": "commenter", "active": True}
        async with w.server.api(made["token"]) as api:
            me = await api.whoami()
        assert (me["user_id"], me["name"], me["session"]) == (made["user_id"], name, w.sid)

    return response, check


async def participants(w: World, who: str) -> Outcome:
    response = await w.http.get(f"/api/sessions/{w.sid}/participants", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if allowed:
            listed = response.json()["participants"]
            # People, not links: the five who joined, each under their own name.
            assert {listed[w.users[r]]["name"] for r in ROLE_NAMES} == set(ROLE_NAMES.values())
            assert not any(p["name"].endswith(" link") for p in listed.values())

    return response, check


#: (the response, a check that the action took effect exactly when it was allowed)
Outcome = tuple[httpx.Response, Callable[[bool], Awaitable[None]]]
HttpAction = Callable[[World, str], Awaitable[Outcome]]


async def no_effect(allowed: bool) -> None:
    return None


async def get_session(w: World, who: str) -> Outcome:
    response = await w.http.get(f"/api/sessions/{w.sid}", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if allowed:
            body = response.json()
            assert body["id"] == w.sid and (body["width"], body["height"]) == (96, 72)

    return response, check


async def whoami(w: World, who: str) -> Outcome:
    response = await w.http.get("/api/whoami", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if not allowed:
            return
        body = response.json()
        if who == "admin":
            assert body["admin"] is True and body["role"] == "owner" and body["session"] is None
        elif who == "other_session":
            assert body["session"] == w.crdt_sid and body["role"] == "owner"
        else:
            assert body["user_id"] == w.users[who] and body["role"] == who
            assert body["session"] == w.sid and body["admin"] is False

    return response, check


async def invite_count(w: World) -> int:
    return len((await w.admin("GET", f"/api/sessions/{w.sid}/invites"))["invites"])


async def create_invite(w: World, who: str) -> Outcome:
    before = await invite_count(w)
    response = await w.http.post(
        f"/api/sessions/{w.sid}/invites",
        json={"role": "commenter", "name": f"Guest of {who}"},
        headers=w.headers(who),
    )

    async def check(allowed: bool) -> None:
        assert await invite_count(w) == before + allowed
        if allowed:
            token = response.json()["token"]
            async with w.server.api(token) as api:
                me = await api.whoami()
            assert me["role"] == "commenter" and me["session"] == w.sid

    return response, check


async def list_invites(w: World, who: str) -> Outcome:
    response = await w.http.get(f"/api/sessions/{w.sid}/invites", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if allowed:
            invites = response.json()["invites"]
            assert {"viewer", "commenter", "editor", "approver", "owner"} <= {
                i["role"] for i in invites
            }
            assert all("token" not in i and "token_hash" not in i for i in invites)

    return response, check


async def revoke_invite(w: World, who: str) -> Outcome:
    made = await w.admin(
        "POST", f"/api/sessions/{w.sid}/invites", json={"role": "viewer", "name": "Doomed"}
    )
    response = await w.http.delete(
        f"/api/sessions/{w.sid}/invites/{made['id']}", headers=w.headers(who)
    )

    async def check(allowed: bool) -> None:
        probe = await w.http.get(
            "/api/whoami", headers={"Authorization": f"Bearer {made['token']}"}
        )
        assert probe.status_code == (403 if allowed else 200)

    return response, check


async def fix(w: World, who: str) -> Outcome:
    room = await w.room()
    before = len(room.jobs)
    response = await w.http.post(
        f"/api/sessions/{w.sid}/pins/fixpin/fix",
        json={"region": FIX_REGION, "variants": 1, "steps": 2, "seed": w.next()},
        headers=w.headers(who),
    )

    async def check(allowed: bool) -> None:
        assert len(room.jobs) == before + allowed
        if allowed:
            [job_id] = response.json()["jobs"]
            assert job_id in room.jobs and job_id in list(room.pins["fixpin"]["jobs"])

    return response, check


async def cancel_job(w: World, who: str) -> Outcome:
    worker = w.server.services.worker
    assert worker is not None
    # Hold the worker's device so the job cannot finish before the cancel arrives.
    async with worker.device:
        made = await w.admin(
            "POST",
            f"/api/sessions/{w.sid}/pins/fixpin/fix",
            json={"region": FIX_REGION, "variants": 1, "steps": 2},
        )
        [job_id] = made["jobs"]
        response = await w.http.post(f"/api/jobs/{job_id}/cancel", headers=w.headers(who))
        status = (await w.server.services.queue.get(job_id)).status.value  # type: ignore[union-attr]

    async def check(allowed: bool) -> None:
        if allowed:
            assert status == "cancelled" and response.json()["status"] == "cancelled"
        else:
            assert status in ("queued", "running")

    return response, check


def upload_links(room: Room) -> list[str]:
    links = room.pins["uploadpin"].get("layers")
    return list(links) if links is not None else []


async def upload_version(w: World, who: str) -> Outcome:
    room = await w.room()
    before = upload_links(room)
    response = await w.http.post(
        f"/api/sessions/{w.sid}/pins/uploadpin/versions",
        files={"image": ("retouched.png", w.changed_copy(w.next()), "image/png")},
        headers=w.headers(who),
    )

    async def check(allowed: bool) -> None:
        after = upload_links(room)
        if allowed:
            assert after == [*before, response.json()["layer"]]
        else:
            assert after == before

    return response, check


async def decide(w: World, who: str) -> Outcome:
    made = await w.http.post(
        f"/api/sessions/{w.sid}/pins/decidepin/versions",
        files={"image": ("v.png", w.changed_copy(w.next()), "image/png")},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert made.status_code == 201, made.text
    layer_id = made.json()["layer"]
    response = await w.http.post(
        f"/api/sessions/{w.sid}/layers/{layer_id}/decision",
        json={"decision": "request_changes", "note": f"from {who}"},
        headers=w.headers(who),
    )
    room = await w.room()

    async def check(allowed: bool) -> None:
        [layer] = [lay for lay in room.layers if lay["id"] == layer_id]
        decisions = layer["decisions"].to_py()
        if allowed:
            user = w.users[who]
            assert decisions == {
                user: {
                    "decision": "request_changes",
                    "note": f"from {who}",
                    "at": pytest.approx(time.time(), abs=30),
                }
            }
            assert layer["state"] == "changes_requested"
        else:
            assert decisions == {} and layer["state"] == "pending"

    return response, check


async def set_locks(w: World, who: str) -> Outcome:
    room = await w.room()
    before = room.meta["locks"].to_py()
    k = w.next()
    locks = [[0, 0, 1 + k % 20, 1 + (k // 20) % 10]]
    response = await w.http.put(
        f"/api/sessions/{w.sid}/locks", json={"locks": locks}, headers=w.headers(who)
    )

    async def check(allowed: bool) -> None:
        assert room.meta["locks"].to_py() == (locks if allowed else before)

    return response, check


async def required_approvals(w: World) -> int:
    return int((await w.admin("GET", f"/api/sessions/{w.sid}"))["required_approvals"])


async def settings(w: World, who: str) -> Outcome:
    before = await required_approvals(w)
    wanted = before % 3 + 1
    response = await w.http.patch(
        f"/api/sessions/{w.sid}/settings",
        json={"required_approvals": wanted},
        headers=w.headers(who),
    )

    async def check(allowed: bool) -> None:
        assert await required_approvals(w) == (wanted if allowed else before)

    return response, check


async def export_png(w: World, who: str) -> Outcome:
    response = await w.http.get(f"/api/sessions/{w.sid}/export.png", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if allowed:
            assert response.headers["content-type"] == "image/png"
            with Image.open(io.BytesIO(response.content)) as img:
                assert img.size == (96, 72)

    return response, check


async def export_json(w: World, who: str) -> Outcome:
    response = await w.http.get(f"/api/sessions/{w.sid}/export.json", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if allowed:
            assert response.json()["session"] == w.sid

    return response, check


async def audit(w: World, who: str) -> Outcome:
    response = await w.http.get(f"/api/sessions/{w.sid}/audit", headers=w.headers(who))

    async def check(allowed: bool) -> None:
        if allowed:
            assert isinstance(response.json()["events"], list)

    return response, check


async def session_count(w: World) -> int:
    return len((await w.admin("GET", "/api/sessions"))["sessions"])


async def create_session(w: World, who: str) -> Outcome:
    before = await session_count(w)
    response = await w.http.post(
        "/api/sessions",
        files={"image": ("new.png", png_bytes(16, 16))},
        data={"title": f"by {who}"},
        headers=w.headers(who),
    )

    async def check(allowed: bool) -> None:
        assert await session_count(w) == before + allowed

    return response, check


HTTP_ACTIONS: dict[str, HttpAction] = {
    "join": join,
    "get_session": get_session,
    "whoami": whoami,
    "participants": participants,
    "create_invite": create_invite,
    "list_invites": list_invites,
    "revoke_invite": revoke_invite,
    "fix": fix,
    "cancel_job": cancel_job,
    "upload_version": upload_version,
    "decide": decide,
    "set_locks": set_locks,
    "settings": settings,
    "export_png": export_png,
    "export_json": export_json,
    "audit": audit,
    "create_session": create_session,
}

ERROR_CODES = {401: "unauthorized", 403: "forbidden"}


def error_code(action: str, who: str, status: int) -> str:
    if who == "link":
        return "join_required"  # a link's token is good only for joining
    if action == "join" and status == 403 and who not in ("revoked", "joined_revoked"):
        return "not_a_link"  # a person (or the admin) cannot join again
    return ERROR_CODES[status]


@in_module_loop
@pytest.mark.parametrize(
    ("action", "who"),
    [(action, who) for action in HTTP_TABLE for who in WHO],
    ids=lambda v: v,
)
async def test_http(world: World, action: str, who: str) -> None:
    expected = HTTP_TABLE[action][WHO.index(who)]
    response, check_effect = await HTTP_ACTIONS[action](world, who)
    assert response.status_code == expected, response.text
    if expected >= 400:
        error = response.json()["error"]
        assert error["code"] == error_code(action, who, expected) and error["message"]
        if who == "link":
            assert "join first" in error["message"]
    await check_effect(expected < 300)


# -- CRDT writes ------------------------------------------------------------------------------


@dataclass
class Case:
    """The pins one document case works on: the writer's own, and the helper's."""

    me: str
    helper: str
    k: int

    @property
    def own(self) -> str:
        return f"own_{self.k}"

    @property
    def own_resolved(self) -> str:
        return f"own_resolved_{self.k}"

    @property
    def other(self) -> str:
        return f"other_{self.k}"

    def pin(self, author: str, *, status: str = "open", thread: list[Map] | None = None) -> Map:
        return Map(
            {
                "x": 5,
                "y": 5,
                "author": author,
                "text": "words",
                "status": status,
                "created_at": time.time(),
                "thread": Array(thread or []),
            }
        )

    def comment(self, comment_id: str, author: str) -> Map:
        return Map({"id": comment_id, "author": author, "text": "said", "at": time.time()})

    def setup(self, room: Room) -> None:
        room.pins[self.own] = self.pin(self.me)
        room.pins[self.own_resolved] = self.pin(self.me, status="resolved")
        room.pins[self.other] = self.pin(
            self.helper,
            thread=[self.comment("theirs", self.helper), self.comment("mine", self.me)],
        )


def _comment(c: SessionClient, pin: str, index: int) -> Map:
    return c.pins[pin]["thread"][index]


CrdtWrite = tuple[Callable[[SessionClient, Case], None], Callable[[dict[str, Any], Case], bool]]


def _pins(state: dict[str, Any]) -> dict[str, Any]:
    return state["pins"]


CRDT_ACTIONS: dict[str, CrdtWrite] = {
    "add_own_pin": (
        lambda c, k: c.add_pin(f"new_{k.k}", x=3, y=4, text="mine", author=k.me),
        lambda s, k: _pins(s).get(f"new_{k.k}", {}).get("author") == k.me,
    ),
    "reply_to_other_pin": (
        lambda c, k: c.reply(k.other, f"reply_{k.k}", text="agreed", author=k.me),
        lambda s, k: _pins(s)[k.other]["thread"][-1]["id"] == f"reply_{k.k}",
    ),
    "edit_own_pin_text": (
        lambda c, k: c.pins[k.own].__setitem__("text", "better words"),
        lambda s, k: _pins(s)[k.own]["text"] == "better words",
    ),
    "move_own_pin": (
        lambda c, k: c.pins[k.own].__setitem__("x", 20),
        lambda s, k: _pins(s)[k.own]["x"] == 20,
    ),
    "resolve_own_pin": (
        lambda c, k: c.pins[k.own].__setitem__("status", "resolved"),
        lambda s, k: _pins(s)[k.own]["status"] == "resolved",
    ),
    "reopen_own_pin": (
        lambda c, k: c.pins[k.own_resolved].__setitem__("status", "open"),
        lambda s, k: _pins(s)[k.own_resolved]["status"] == "open",
    ),
    "edit_own_comment": (
        lambda c, k: _comment(c, k.other, 1).__setitem__("text", "said better"),
        lambda s, k: _pins(s)[k.other]["thread"][1]["text"] == "said better",
    ),
    "add_pin_as_other": (
        lambda c, k: c.add_pin(f"new_{k.k}", x=3, y=4, text="forged", author=k.helper),
        lambda s, k: f"new_{k.k}" in _pins(s),
    ),
    "reply_as_other": (
        lambda c, k: c.reply(k.other, f"reply_{k.k}", text="forged", author=k.helper),
        lambda s, k: len(_pins(s)[k.other]["thread"]) == 3,
    ),
    "edit_other_pin": (
        lambda c, k: c.pins[k.other].__setitem__("text", "not yours"),
        lambda s, k: _pins(s)[k.other]["text"] == "not yours",
    ),
    "resolve_other_pin": (
        lambda c, k: c.pins[k.other].__setitem__("status", "resolved"),
        lambda s, k: _pins(s)[k.other]["status"] == "resolved",
    ),
    "edit_other_comment": (
        lambda c, k: _comment(c, k.other, 0).__setitem__("text", "not yours"),
        lambda s, k: _pins(s)[k.other]["thread"][0]["text"] == "not yours",
    ),
    "delete_own_pin": (
        lambda c, k: c.pins.__delitem__(k.own),
        lambda s, k: k.own not in _pins(s),
    ),
    "link_own_pin_to_layer": (
        lambda c, k: c.pins[k.own].__setitem__("layers", Array(["l_forged"])),
        lambda s, k: "layers" in _pins(s)[k.own],
    ),
    "write_meta": (
        lambda c, k: c.meta.__setitem__("title", "hijacked"),
        lambda s, k: s["meta"]["title"] == "hijacked",
    ),
    "write_layers": (
        lambda c, k: c.layers.append(Map({"id": f"forged_{k.k}", "state": "approved"})),
        lambda s, k: any(lay.get("id") == f"forged_{k.k}" for lay in s["layers"]),
    ),
    "write_jobs": (
        lambda c, k: c.jobs.__setitem__(f"forged_{k.k}", Map({"status": "done"})),
        lambda s, k: f"forged_{k.k}" in s["jobs"],
    ),
}


async def barrier(w: World, client: SessionClient) -> None:
    """Return once ``client`` has everything the server sent it before now.

    The helper writes after the server handled the client's update; the server sends in
    order, so whatever it answered the client arrives before the helper's change.
    """
    text = f"mark {w.next()}"
    w.crdt_helper.pins[MARKER]["text"] = text

    def seen() -> bool:
        marker = client.pins.get(MARKER)
        return marker is not None and marker.get("text") == text

    await client.wait_for(seen)


@in_module_loop
@pytest.mark.parametrize(
    ("action", "who"),
    [(action, who) for action in CRDT_TABLE for who in WRITERS],
    ids=lambda v: v,
)
async def test_crdt(world: World, action: str, who: str) -> None:
    expected = CRDT_TABLE[action][WRITERS.index(who)]
    case = Case(world.crdt_users[who], world.crdt_helper_user, world.next())
    room = await world.room(world.crdt_sid)
    await room.server_write(case.setup)
    before = without_marker(room_state(room))
    token = world.crdt_tokens[who]
    assert token is not None
    write, applied = CRDT_ACTIONS[action]
    assert not applied(before, case)
    async with world.server.client(world.crdt_sid, token) as client:
        assert without_marker(client.state()) == before
        write(client, case)
        assert applied(client.state(), case)  # it did change the writer's copy
        if expected == OK:
            await eventually(lambda: applied(room_state(room), case))
            await barrier(world, client)
            assert client.denied == []
            assert without_marker(client.state()) == without_marker(room_state(room))
        else:
            await client.wait_for(lambda: client.denied, timeout=5)
            reason = "; ".join(client.denied)
            if expected == READ_ONLY:
                assert "read-only" in reason
            else:
                assert REVERT_REASONS[action] in reason
                # The writer's copy drops the refused change: it ends with the server's.
                await client.wait_for(lambda: without_marker(client.state()) == before)
            await barrier(world, client)
            assert without_marker(room_state(room)) == before
        # The other participants end up with exactly the server's state.
        helper = world.crdt_helper
        await helper.wait_for(lambda: helper.state() == room_state(room))
        assert client.connected


@in_module_loop
@pytest.mark.parametrize("who", WHO)
async def test_joining_the_document(world: World, who: str) -> None:
    token = world.crdt_tokens[who]
    client = world.server.client(world.crdt_sid, token or "")
    refused = CONNECT_TABLE[who]
    if refused is None:
        await client.connect()
        try:
            assert client.state()["meta"]["title"] == "CRDT"
        finally:
            await client.disconnect()
    else:
        with pytest.raises(ConnectionError):
            await client.connect()
        assert client.closed is not None and client.closed[0] == refused
        if who == "link":
            assert "join first" in client.closed[1]
