"""The HTTP API (DESIGN.md section 7): sessions, invites, identity, blobs, health and metrics.

Every test talks to a real server over loopback; raw requests go through httpx so that
statuses, headers and error bodies are checked exactly as a client sees them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from proofroom.client.api import token_from_url

from .helpers import ADMIN_TOKEN, ROLES, ReviewSession, RunningServer, png_bytes, run_server

NON_OWNER_ROLES = ("viewer", "commenter", "editor", "approver")


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    """A plain client with no credentials."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = bearer(ADMIN_TOKEN)


def assert_error(
    response: httpx.Response, status: int, code: str | None = None, *, case: object = None
) -> str:
    """The response is a JSON error with this status (and code); return its message."""
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, (case, body)
    assert set(body["error"]) == {"code", "message"}, (case, body)
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    if code is not None:
        assert body["error"]["code"] == code, (case, body)
    message: str = body["error"]["message"]
    return message


async def upload(
    http: httpx.AsyncClient,
    image: bytes,
    *,
    title: str = "A review",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        "/api/sessions",
        headers=ADMIN if headers is None else headers,
        files={"image": ("image.png", image, "image/png")},
        data={"title": title},
    )


async def whoami(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/api/whoami", headers=bearer(token))


async def create_invite(
    http: httpx.AsyncClient, session_id: str, token: str, body: Any
) -> httpx.Response:
    return await http.post(f"/api/sessions/{session_id}/invites", headers=bearer(token), json=body)


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in metrics"
    return float(match.group(1))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Re-run an async check (each run is a request to the server) until it holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"


# -- creating sessions ----------------------------------------------------------------------


async def test_create_session_returns_one_working_link_per_role(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    response = await upload(http, png_bytes(64, 48), title="Poster v3")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["title"] == "Poster v3"
    assert (body["width"], body["height"]) == (64, 48)
    session_id = body["id"]
    assert isinstance(session_id, str) and session_id
    assert set(body["links"]) == set(ROLES)
    tokens = set()
    for role, url in body["links"].items():
        assert url.startswith(f"{server.url}/s/{session_id}?token="), url
        token = token_from_url(url)
        tokens.add(token)
        # A link is a door: whoever opens it joins under a name of their own.
        assert_error(await whoami(http, token), 401, "join_required")
        joined = await http.post("/api/join", json={"name": "Pat"}, headers=bearer(token))
        assert joined.status_code == 201, joined.text
        me = await whoami(http, joined.json()["token"])
        assert me.status_code == 200, me.text
        assert me.json()["role"] == role
        assert me.json()["session"] == session_id
        page = await http.get(url)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
    assert len(tokens) == len(ROLES)


async def test_only_the_admin_token_creates_sessions(
    server: RunningServer, session: ReviewSession, http: httpx.AsyncClient
) -> None:
    for role in ROLES:
        response = await upload(http, png_bytes(), headers=bearer(session.tokens[role]))
        assert_error(response, 403, "forbidden")
    assert_error(await upload(http, png_bytes(), headers={}), 401, "unauthorized")
    assert [s["id"] for s in await server.admin.list_sessions()] == [session.id]


async def test_create_session_without_image_field_is_400(http: httpx.AsyncClient) -> None:
    # A multipart body with only a title.
    response = await http.post(
        "/api/sessions", headers=ADMIN, data={"title": "t"}, files={"other": ("a.png", b"x")}
    )
    assert_error(response, 400)
    # 'image' sent as a text field rather than a file.
    response = await http.post(
        "/api/sessions", headers=ADMIN, data={"image": "not a file"}, files={"x": ("x", b"")}
    )
    assert_error(response, 400)


async def test_title_longer_than_the_limit_is_400(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    limit = server.settings.max_title_chars
    response = await upload(http, png_bytes(), title="t" * (limit + 1))
    assert "title" in assert_error(response, 400)
    response = await upload(http, png_bytes(), title="t" * limit)
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "t" * limit


async def test_upload_over_the_byte_limit_is_413(tmp_path: Path) -> None:
    async with (
        run_server(tmp_path / "data", max_upload_bytes=4096) as small,
        httpx.AsyncClient(base_url=small.url, timeout=30) as http,
    ):
        # Just over the limit (the server reads no further than the limit).
        assert_error(await upload(http, b"\x89PNG" + b"\0" * 4093), 413, "too_large")
        # Far over the limit: refused from the declared Content-Length.
        assert_error(await upload(http, b"\0" * (1024 * 1024)), 413, "too_large")
        # Under the limit is accepted.
        small_png = png_bytes(16, 16)
        assert len(small_png) < 4096
        assert (await upload(http, small_png)).status_code == 201
        assert len(await small.admin.list_sessions()) == 1


async def test_upload_without_content_length_is_refused(tmp_path: Path) -> None:
    """A chunked upload cannot be sized up front: refused (411), never accepted past the limit."""
    async with (
        run_server(tmp_path / "data", max_upload_bytes=4096) as small,
        httpx.AsyncClient(base_url=small.url, timeout=30) as http,
    ):
        boundary = "proofroomtestboundary"
        body = (
            (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="image"; filename="a.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + b"\0" * 100_000
            + f"\r\n--{boundary}--\r\n".encode()
        )

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        response = await http.post(
            "/api/sessions",
            headers={**ADMIN, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            content=chunks(),
        )
        assert "content-length" not in response.request.headers
        assert response.status_code in (411, 413), response.text
        assert_error(response, response.status_code)
        assert await small.admin.list_sessions() == []


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/json", json.dumps({"image": "data:image/png;base64,AAAA"}).encode()),
        ("image/png", png_bytes()),
        ("application/x-www-form-urlencoded", b"image=abc&title=x"),
        ("multipart/form-data", b"no boundary here"),
    ],
    ids=["json", "raw-png", "urlencoded", "multipart-without-boundary"],
)
async def test_non_multipart_body_is_400(
    http: httpx.AsyncClient, content_type: str, content: bytes
) -> None:
    response = await http.post(
        "/api/sessions", headers={**ADMIN, "Content-Type": content_type}, content=content
    )
    assert_error(response, 400)


# -- reading sessions -----------------------------------------------------------------------


async def test_admin_lists_all_sessions_and_a_token_only_its_own(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    first = await server.new_session(title="First")
    second = await server.new_session(title="Second", width=30, height=20)
    response = await http.get("/api/sessions", headers=ADMIN)
    assert response.status_code == 200
    listed = {s["id"]: s for s in response.json()["sessions"]}
    assert set(listed) == {first.id, second.id}
    assert listed[second.id]["title"] == "Second"
    assert (listed[second.id]["width"], listed[second.id]["height"]) == (30, 20)
    for role in ROLES:
        response = await http.get("/api/sessions", headers=bearer(second.tokens[role]))
        assert response.status_code == 200
        assert [s["id"] for s in response.json()["sessions"]] == [second.id]


async def test_get_session_is_scoped_to_the_tokens_session(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    mine = await server.new_session(title="Mine")
    other = await server.new_session(title="Other")
    response = await http.get(f"/api/sessions/{mine.id}", headers=bearer(mine.tokens["viewer"]))
    assert response.status_code == 200
    assert response.json()["id"] == mine.id
    assert response.json()["title"] == "Mine"
    for role in ROLES:
        response = await http.get(f"/api/sessions/{mine.id}", headers=bearer(other.tokens[role]))
        assert_error(response, 403, "forbidden")
    response = await http.get(f"/api/sessions/{other.id}", headers=ADMIN)
    assert response.status_code == 200 and response.json()["title"] == "Other"
    assert_error(await http.get("/api/sessions/0123456789abcdef", headers=ADMIN), 404)


# -- invites --------------------------------------------------------------------------------


async def test_owner_invite_gives_a_working_named_token(
    server: RunningServer, session: ReviewSession, http: httpx.AsyncClient
) -> None:
    response = await create_invite(
        http,
        session.id,
        session.tokens["owner"],
        {"role": "approver", "name": "Dana (legal)", "expires_in": 3600},
    )
    assert response.status_code == 201, response.text
    made = response.json()
    token = made["token"]
    assert made["url"] == f"{server.url}/s/{session.id}?token={token}"
    assert made["expires_at"] == pytest.approx(time.time() + 3600, abs=60)
    me = await whoami(http, token)
    assert me.status_code == 200
    assert me.json()["name"] == "Dana (legal)"
    assert me.json()["role"] == "approver"
    assert me.json()["session"] == session.id
    assert me.json()["user_id"] not in session.users.values()

    listed = await http.get(
        f"/api/sessions/{session.id}/invites", headers=bearer(session.tokens["owner"])
    )
    assert listed.status_code == 200
    invites = listed.json()["invites"]
    mine = [i for i in invites if i["id"] == made["id"]]
    assert len(mine) == 1
    assert mine[0]["name"] == "Dana (legal)" and mine[0]["role"] == "approver"
    # The share links are invites too; none of them exposes a token or its hash.
    assert len(invites) == len(ROLES) + 1
    secrets_ = [token, *session.tokens.values()]
    for secret in secrets_:
        assert secret not in listed.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in listed.text
    for invite in invites:
        assert not [k for k in invite if "token" in k or "hash" in k], invite


async def test_admin_can_invite_without_expiry(
    session: ReviewSession, http: httpx.AsyncClient
) -> None:
    response = await create_invite(
        http, session.id, ADMIN_TOKEN, {"role": "commenter", "name": "Sam"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["expires_at"] is None
    me = await whoami(http, response.json()["token"])
    assert (me.json()["role"], me.json()["name"]) == ("commenter", "Sam")


BAD_INVITES: list[dict[str, Any]] = [
    {"role": "superuser", "name": "x"},
    {"role": "", "name": "x"},
    {"role": None, "name": "x"},
    {"name": "x"},
    {"role": "viewer", "name": ""},
    {"role": "viewer", "name": "   "},
    {"role": "viewer"},
    {"role": "viewer", "name": 42},
    {"role": "viewer", "name": "n" * 500},
    {"role": "viewer", "name": "x", "expires_in": -5},
    {"role": "viewer", "name": "x", "expires_in": 0},
    {"role": "viewer", "name": "x", "expires_in": 10**12},
    {"role": "viewer", "name": "x", "expires_in": "3600"},
    {"role": "viewer", "name": "x", "expires_in": True},
]


async def test_bad_invite_requests_are_400(session: ReviewSession, http: httpx.AsyncClient) -> None:
    for body in BAD_INVITES:
        response = await create_invite(http, session.id, session.tokens["owner"], body)
        assert_error(response, 400, "bad_request", case=body)
    listed = await http.get(f"/api/sessions/{session.id}/invites", headers=ADMIN)
    assert len(listed.json()["invites"]) == len(ROLES)


@pytest.mark.parametrize("role", NON_OWNER_ROLES)
async def test_only_owners_manage_invites(
    session: ReviewSession, http: httpx.AsyncClient, role: str
) -> None:
    token = session.tokens[role]
    body = {"role": "viewer", "name": "x"}
    assert_error(await create_invite(http, session.id, token, body), 403, "forbidden")
    response = await http.get(f"/api/sessions/{session.id}/invites", headers=bearer(token))
    assert_error(response, 403, "forbidden")
    invites = (await http.get(f"/api/sessions/{session.id}/invites", headers=ADMIN)).json()
    some_id = invites["invites"][0]["id"]
    response = await http.delete(
        f"/api/sessions/{session.id}/invites/{some_id}", headers=bearer(token)
    )
    assert_error(response, 403, "forbidden")
    assert len(invites["invites"]) == len(ROLES)
    assert all(i["revoked_at"] is None for i in invites["invites"])


async def test_owner_of_another_session_cannot_manage_its_invites(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    a = await server.new_session()
    b = await server.new_session()
    body = {"role": "owner", "name": "intruder"}
    assert_error(await create_invite(http, b.id, a.tokens["owner"], body), 403)
    response = await http.get(f"/api/sessions/{b.id}/invites", headers=bearer(a.tokens["owner"]))
    assert_error(response, 403)


async def test_invite_to_unknown_session_is_404(http: httpx.AsyncClient) -> None:
    response = await create_invite(
        http, "0123456789abcdef", ADMIN_TOKEN, {"role": "viewer", "name": "x"}
    )
    assert_error(response, 404)


async def test_expired_invite_is_401(
    server: RunningServer, session: ReviewSession, http: httpx.AsyncClient
) -> None:
    response = await create_invite(
        http,
        session.id,
        session.tokens["owner"],
        {"role": "editor", "name": "Brief", "expires_in": 0.001},
    )
    assert response.status_code == 201, response.text
    made = response.json()
    # Wait on the clock alone (no sleeping) until the expiry has passed.
    deadline = time.monotonic() + 5
    while time.time() <= made["expires_at"]:
        assert time.monotonic() < deadline
    assert_error(await whoami(http, made["token"]), 401, "unauthorized")
    assert_error(await http.get(f"/api/sessions/{session.id}", headers=bearer(made["token"])), 401)
    client = server.client(session.id, made["token"])
    with pytest.raises(ConnectionError):
        await client.connect()
    assert client.closed is not None and client.closed[0] == 4401


async def test_revoking_an_invite_locks_its_holder_out(
    server: RunningServer, session: ReviewSession, http: httpx.AsyncClient
) -> None:
    owner = bearer(session.tokens["owner"])
    made = (
        await create_invite(
            http, session.id, session.tokens["owner"], {"role": "editor", "name": "Temp"}
        )
    ).json()
    token = made["token"]
    async with (
        server.client(session.id, token) as revoked,
        server.client(session.id, session.tokens["owner"]) as bystander,
    ):
        assert revoked.connected
        response = await http.delete(
            f"/api/sessions/{session.id}/invites/{made['id']}", headers=owner
        )
        assert response.status_code == 204
        assert response.content == b""
        await revoked.wait_for(lambda: revoked.closed is not None)
        assert revoked.closed is not None and revoked.closed[0] == 4403
        # Only that invite's connections are closed.
        await bystander.flush()
        assert bystander.connected
    assert_error(await whoami(http, token), 403, "forbidden")
    again = server.client(session.id, token)
    with pytest.raises(ConnectionError):
        await again.connect()
    assert again.closed is not None and again.closed[0] == 4403
    listed = (await http.get(f"/api/sessions/{session.id}/invites", headers=owner)).json()
    entry = next(i for i in listed["invites"] if i["id"] == made["id"])
    assert entry["revoked_at"] is not None
    # The owner's own link still works.
    assert (await whoami(http, session.tokens["owner"])).status_code == 200


async def test_revoking_an_unknown_invite_is_404(
    server: RunningServer, http: httpx.AsyncClient
) -> None:
    a = await server.new_session()
    b = await server.new_session()
    owner_a = bearer(a.tokens["owner"])
    response = await http.delete(f"/api/sessions/{a.id}/invites/ffffffffffff", headers=owner_a)
    assert_error(response, 404, "not_found")
    # An invite of session b is unknown in session a, and b's path is forbidden to a's owner.
    b_invite = (await http.get(f"/api/sessions/{b.id}/invites", headers=ADMIN)).json()["invites"][
        0
    ]["id"]
    response = await http.delete(f"/api/sessions/{a.id}/invites/{b_invite}", headers=owner_a)
    assert_error(response, 404)
    response = await http.delete(f"/api/sessions/{b.id}/invites/{b_invite}", headers=owner_a)
    assert_error(response, 403)
    assert (await whoami(http, b.tokens["viewer"])).status_code == 200


# -- authentication and request hygiene ----------------------------------------------------


async def test_requests_without_a_valid_token_are_401(
    session: ReviewSession, http: httpx.AsyncClient
) -> None:
    paths = ["/api/whoami", "/api/sessions", f"/api/sessions/{session.id}"]
    for path in paths:
        assert_error(await http.get(path), 401, "unauthorized")
        assert_error(await http.get(path, headers=bearer("pr_garbage")), 401, "unauthorized")
        assert_error(await http.get(path, params={"token": "nonsense"}), 401)
        assert_error(await http.get(path, headers={"Authorization": "Bearer"}), 401)
        basic = {"Authorization": f"Basic {session.tokens['owner']}"}
        assert_error(await http.get(path, headers=basic), 401)


async def test_bearer_header_and_query_token_both_work(
    session: ReviewSession, http: httpx.AsyncClient
) -> None:
    token = session.tokens["commenter"]
    by_header = await http.get("/api/whoami", headers=bearer(token))
    by_lowercase = await http.get("/api/whoami", headers={"authorization": f"bearer {token}"})
    by_query = await http.get("/api/whoami", params={"token": token})
    for response in (by_header, by_lowercase, by_query):
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "commenter"
        assert response.json()["session"] == session.id
    admin = await http.get("/api/whoami", params={"token": ADMIN_TOKEN})
    assert admin.status_code == 200 and admin.json()["role"] == "owner"


async def test_json_body_must_be_an_object(session: ReviewSession, http: httpx.AsyncClient) -> None:
    bodies = [
        b"{not json",
        b'{"role": "viewer",',
        b"\xff\xfe\x00",
        b'[{"role": "viewer"}]',
        b'"viewer"',
        b"42",
        b"null",
    ]
    for content in bodies:
        response = await http.post(
            f"/api/sessions/{session.id}/invites",
            headers={**bearer(session.tokens["owner"]), "Content-Type": "application/json"},
            content=content,
        )
        assert_error(response, 400, "bad_request", case=content)


async def test_oversized_json_body_is_413(session: ReviewSession, http: httpx.AsyncClient) -> None:
    body = json.dumps({"role": "viewer", "name": "x", "pad": "p" * (2 * 1024 * 1024)})
    response = await http.post(
        f"/api/sessions/{session.id}/invites",
        headers={**bearer(session.tokens["owner"]), "Content-Type": "application/json"},
        content=body,
    )
    assert_error(response, 413)


async def test_unknown_route_is_json_404(http: httpx.AsyncClient) -> None:
    for path in ["/api/nope", "/nope", "/api/sessions/x/y/z", "/blobs/", "/api/whoami/x"]:
        assert_error(await http.get(path, headers=ADMIN), 404, "not_found", case=path)


WRONG_METHODS = [
    ("PUT", "/api/whoami", {"GET"}),
    ("POST", "/healthz", {"GET"}),
    ("DELETE", "/api/sessions", {"GET", "POST"}),
    ("PATCH", "/api/sessions/abc/invites", {"GET", "POST"}),
    ("GET", "/api/sessions/abc/invites/def", {"DELETE"}),
]


async def test_wrong_method_is_json_405(http: httpx.AsyncClient) -> None:
    for method, path, _ in WRONG_METHODS:
        response = await http.request(method, path, headers=ADMIN)
        assert_error(response, 405, "method_not_allowed", case=(method, path))


async def test_405_lists_every_allowed_method(http: httpx.AsyncClient) -> None:
    """RFC 9110 15.5.6: a 405 carries Allow with all the resource's methods."""
    for method, path, allowed in WRONG_METHODS:
        response = await http.request(method, path, headers=ADMIN)
        allow = {m.strip() for m in response.headers.get("allow", "").split(",")}
        assert allowed <= allow, f"{method} {path}: Allow {response.headers.get('allow')!r}"


# -- blobs ----------------------------------------------------------------------------------


async def test_blob_needs_a_token_and_is_immutable(
    session: ReviewSession, http: httpx.AsyncClient
) -> None:
    blob_id = session.created["base"]
    assert_error(await http.get(f"/blobs/{blob_id}"), 401, "unauthorized")
    assert_error(await http.get(f"/blobs/{blob_id}", headers=bearer("pr_nope")), 401)

    response = await http.get(f"/blobs/{blob_id}", headers=bearer(session.tokens["viewer"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert hashlib.sha256(response.content).hexdigest() == blob_id
    cache = response.headers["cache-control"]
    assert "immutable" in cache
    assert int(re.search(r"max-age=(\d+)", cache).group(1)) >= 86400  # type: ignore[union-attr]
    etag = response.headers["etag"]
    assert etag

    # An <img src> cannot send headers: the query token works too.
    by_query = await http.get(f"/blobs/{blob_id}", params={"token": session.tokens["viewer"]})
    assert by_query.status_code == 200 and by_query.content == response.content

    cached = await http.get(
        f"/blobs/{blob_id}", headers={**bearer(session.tokens["viewer"]), "If-None-Match": etag}
    )
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag

    stale = await http.get(
        f"/blobs/{blob_id}", headers={**ADMIN, "If-None-Match": '"something-else"'}
    )
    assert stale.status_code == 200 and stale.content == response.content


async def test_unknown_or_invalid_blob_is_404(
    session: ReviewSession, http: httpx.AsyncClient
) -> None:
    real = session.created["base"]
    ids = [
        "0" * 64,
        "f" * 64,
        "abc",
        "not-a-blob",
        "..%2F..%2Fsettings",
        real.upper(),
        real + "0",
        real[:-1],
    ]
    for blob_id in ids:
        response = await http.get(f"/blobs/{blob_id}", headers=ADMIN)
        assert_error(response, 404, "not_found", case=blob_id)


# -- health and metrics ---------------------------------------------------------------------


async def test_healthz(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_are_prometheus_text(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert re.search(r"^# TYPE proofroom_connections gauge$", text, re.MULTILINE)
    assert re.search(r"^# TYPE proofroom_rooms gauge$", text, re.MULTILINE)
    assert re.search(r"^# TYPE proofroom_doc_updates_total counter$", text, re.MULTILINE)
    assert re.search(r"^# TYPE proofroom_broadcast_latency_seconds histogram$", text, re.MULTILINE)
    assert re.search(
        r'^proofroom_broadcast_latency_seconds_bucket\{le="\+Inf"\} \d+$', text, re.MULTILINE
    )
    # Every non-comment line is "name{labels} value".
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[a-zA-Z_:][\w:]*(\{[^}]*\})? [-+\w.]+", line), line
    assert metric(text, "proofroom_connections") == 0


async def test_metrics_follow_connections_and_updates(
    server: RunningServer, session: ReviewSession, http: httpx.AsyncClient
) -> None:
    async def read() -> str:
        return (await http.get("/metrics")).text

    before = await read()
    assert metric(before, "proofroom_connections") == 0
    async with (
        server.client(session.id, session.tokens["commenter"]) as writer,
        server.client(session.id, session.tokens["viewer"]) as reader,
    ):
        during = await read()
        assert metric(during, "proofroom_connections") == 2
        assert metric(during, "proofroom_rooms") >= 1
        writer.add_pin("p1", x=1, y=2, text="metric me", author=session.users["commenter"])
        await reader.wait_for(lambda: "p1" in reader.pins)

        async def counted() -> bool:
            text = await read()
            return metric(text, "proofroom_doc_updates_total") > metric(
                before, "proofroom_doc_updates_total"
            ) and metric(text, "proofroom_broadcast_latency_seconds_count") > metric(
                before, "proofroom_broadcast_latency_seconds_count"
            )

        await eventually(counted)

    async def all_closed() -> bool:
        return metric(await read(), "proofroom_connections") == 0

    await eventually(all_closed)
