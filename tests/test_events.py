"""``GET /api/events``: server-sent review events over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from proofroom.client import ApiClient, ApiError
from proofroom.client.events import ServerEvent
from proofroom.server.review.events import Event

from .helpers import ADMIN_TOKEN, ReviewSession, RunningServer, eventually, run_server
from .review_steps import decide, fix, put_pin, upload_version, wait_for_pin


async def next_event(stream: AsyncIterator[ServerEvent], timeout: float = 30) -> ServerEvent:
    return await asyncio.wait_for(anext(stream), timeout)


async def ready(stream: AsyncIterator[ServerEvent]) -> ServerEvent:
    first = await next_event(stream)
    assert first.event == "ready", first
    return first


async def test_the_admin_sees_a_finished_job_and_a_decision(
    server: RunningServer, session: ReviewSession
) -> None:
    sid = session.id
    async with (
        server.admin.events(types=["layer.decision", "job.done"]) as stream,
        server.client(sid, session.tokens["editor"]) as editor,
        ApiClient(server.url, session.tokens["editor"]) as edit,
        ApiClient(server.url, session.tokens["approver"]) as approve,
    ):
        assert (await ready(stream)).data == {"session": None, "types": "layer.decision,job.done"}
        await put_pin(editor, "p1", session.users["editor"], 1.0, region=[5, 5, 10, 10])
        await wait_for_pin(server, sid, "p1")
        layer_id = await fix(edit, editor, sid, "p1", [5, 5, 10, 10])
        done = await next_event(stream)
        assert done.event == "job.done" and done.id is not None
        assert done.data["type"] == "job.done" and done.data["session"] == sid
        assert done.data["data"]["layer"] == layer_id and done.data["data"]["pin"] == "p1"
        await decide(approve, sid, layer_id, "approve", "good")
        decision = await next_event(stream)
        assert decision.event == "layer.decision"
        assert int(decision.id or 0) > int(done.id or 0)
        data = decision.data["data"]
        assert data["layer"] == layer_id and data["decision"] == "approve"
        assert data["state"] == "approved" and data["previous_state"] == "pending"
        assert data["user"] == session.users["approver"] and data["note"] == "good"


async def test_a_session_token_sees_only_its_own_session(server: RunningServer) -> None:
    mine = await server.new_session(title="mine")
    other = await server.new_session(title="other")
    async with (
        server.admin.events(types=["pin.*"]) as everything,
        ApiClient(server.url, mine.tokens["viewer"]) as viewer,
        viewer.events() as own,
    ):
        await ready(everything)
        assert (await ready(own)).data["session"] == mine.id
        async with server.client(other.id, other.tokens["commenter"]) as c:
            await put_pin(c, "elsewhere", other.users["commenter"], 1.0)
            # Events reach every subscriber in publishing order: once the admin has seen
            # this one, the viewer's stream has passed it too.
            seen = await next_event(everything)
            assert (seen.event, seen.data["session"]) == ("pin.created", other.id)
        async with server.client(mine.id, mine.tokens["commenter"]) as c:
            await put_pin(c, "here", mine.users["commenter"], 1.0)
            seen = await next_event(everything)
            assert (seen.event, seen.data["session"]) == ("pin.created", mine.id)
        first = await next_event(own)
        assert first.event == "pin.created" and first.data["session"] == mine.id
        assert first.data["data"]["pin"] == "here"
        with pytest.raises(ApiError) as err:
            async with viewer.events(session=other.id):
                pass
        assert err.value.status == 403
    async with ApiClient(server.url, "pr_wrong") as stranger:
        with pytest.raises(ApiError) as err:
            async with stranger.events():
                pass
        assert err.value.status == 401


async def test_types_filter_the_stream(server: RunningServer, session: ReviewSession) -> None:
    sid = session.id
    async with (
        server.admin.events(types=["layer.created"]) as stream,
        server.client(sid, session.tokens["editor"]) as editor,
        ApiClient(server.url, session.tokens["editor"]) as edit,
    ):
        await ready(stream)
        await put_pin(editor, "p1", session.users["editor"], 1.0)
        await wait_for_pin(server, sid, "p1")
        layer_id = await upload_version(edit, sid, "p1", (1, 2, 3))
        created = await next_event(stream)
        assert created.event == "layer.created" and created.data["data"]["layer"] == layer_id


async def test_the_stream_sends_heartbeats_and_ends_on_disconnect(tmp_path: Path) -> None:
    async with run_server(tmp_path / "data", events_heartbeat_seconds=0.05) as server:
        bus = server.services.bus
        async with (
            httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=10)) as http,
            http.stream("GET", "/api/events", params={"token": ADMIN_TOKEN}) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 3000"
            heartbeats = 0
            async for line in lines:
                heartbeats += line == ": heartbeat"
                if heartbeats == 3:
                    break
            assert bus.subscribers == 1
        # The client went away: the server notices and unsubscribes.
        await eventually(lambda: bus.subscribers == 0)


async def test_a_subscriber_that_falls_behind_is_dropped_with_a_last_word(
    server: RunningServer,
) -> None:
    bus = server.services.bus
    async with server.admin.events() as stream:
        await ready(stream)
        # More events at once than a subscriber's buffer holds, before it can read any.
        for n in range(1500):
            bus.publish(Event("test.flood", "s", {"n": n}))
        kinds = [ev.event async for ev in stream]
    assert kinds[-1] == "dropped"
    assert 0 < kinds.count("test.flood") < 1500
    await eventually(lambda: bus.subscribers == 0)


async def test_the_stream_ends_cleanly_when_the_server_shuts_down(tmp_path: Path) -> None:
    received: list[str] = []
    listening = asyncio.Event()

    async def listen(api: ApiClient) -> None:
        async with api.events() as stream:
            async for ev in stream:
                received.append(ev.event)
                listening.set()

    async with asyncio.timeout(30), contextlib.AsyncExitStack() as stack:
        async with run_server(tmp_path / "data") as server:
            api = await stack.enter_async_context(ApiClient(server.url, ADMIN_TOKEN))
            task = asyncio.get_running_loop().create_task(listen(api))
            await listening.wait()
        # Leaving the block stopped the server, which had to end the open stream.
        await task
    assert received == ["ready", "closing"]


async def _ticket(server: RunningServer, token: str) -> str:
    async with ApiClient(server.url, token) as api:
        made = await api.json("POST", "/api/events/ticket")
    assert made["expires_in"] > 0
    return str(made["ticket"])


async def _open_with(server: RunningServer, **params: str) -> tuple[int, str]:
    """Open the stream with these query parameters (no header); (status, first line)."""
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=httpx.Timeout(10, read=10)) as http,
        http.stream("GET", "/api/events", params=params) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            return response.status_code, response.json()["error"]["code"]
        lines = response.aiter_lines()
        assert await anext(lines) == "retry: 3000"
        assert await anext(lines) == ""
        return 200, (await anext(lines)) + " " + (await anext(lines))


async def test_a_ticket_opens_one_stream_without_the_token_in_the_url(
    server: RunningServer,
) -> None:
    """A browser's EventSource cannot send a header: the token buys a one-time ticket."""
    ticket = await _ticket(server, ADMIN_TOKEN)
    assert ADMIN_TOKEN not in ticket
    status, hello = await _open_with(server, ticket=ticket)
    assert status == 200 and hello == 'event: ready data: {"session":null,"types":null}'
    # Used once, it is spent: a replayed URL (a log, a history) opens nothing.
    assert await _open_with(server, ticket=ticket) == (401, "unauthorized")
    assert await _open_with(server, ticket="pr_ticket_made_up") == (401, "unauthorized")
    # It opens the event stream and nothing else.
    ticket = await _ticket(server, ADMIN_TOKEN)
    with pytest.raises(ApiError) as elsewhere:
        async with ApiClient(server.url, ticket) as api:
            await api.json("GET", "/api/whoami")
    assert elsewhere.value.status == 401
    assert await _open_with(server, ticket=ticket, token=ADMIN_TOKEN) == (400, "bad_request")


async def test_a_ticket_keeps_its_holders_scope_and_rights(server: RunningServer) -> None:
    mine = await server.new_session(title="mine")
    other = await server.new_session(title="other")
    ticket = await _ticket(server, mine.tokens["viewer"])
    # Scoped to the session of the token that asked for it.
    assert await _open_with(server, ticket=ticket, session=other.id) == (403, "forbidden")
    ticket = await _ticket(server, mine.tokens["viewer"])
    status, hello = await _open_with(server, ticket=ticket)
    assert status == 200 and f'"session":"{mine.id}"' in hello
    # A ticket is resolved again when used: revoking the invite spends its tickets too.
    ticket = await _ticket(server, mine.tokens["viewer"])
    async with ApiClient(server.url, mine.tokens["owner"]) as owner:
        invites = (await owner.json("GET", f"/api/sessions/{mine.id}/invites"))["invites"]
        link = next(i for i in invites if i["role"] == "viewer")
        await owner.request("DELETE", f"/api/sessions/{mine.id}/invites/{link['id']}")
    status, _ = await _open_with(server, ticket=ticket)
    assert status in (401, 403)
    # No token, no ticket; and a link's own token is not a person's.
    with pytest.raises(ApiError) as anonymous:
        await _ticket(server, "pr_not_a_token")
    assert anonymous.value.status == 401
    with pytest.raises(ApiError) as link_token:
        await _ticket(server, other.links["commenter"])
    assert link_token.value.status == 401
