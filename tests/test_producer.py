"""The producer's index and view, against a scripted review timeline on a real server."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from proofroom.client import ApiClient, ApiError

from .helpers import ReviewSession, RunningServer, run_server
from .review_steps import decide, fix, put_pin, upload_version, wait_for_pin

NO_JOBS = {"done": 0, "failed": 0, "cancelled": 0}


def between(start: float, fraction: float) -> float:
    """A time between ``start`` and now (a pin time the server will accept as it is)."""
    return start + (time.time() - start) * fraction


async def figures(server: RunningServer, **params: Any) -> dict[str, Any]:
    await server.services.producer.flush()  # the index follows events on the write path
    return await server.admin.producer(**params)


async def until(server: RunningServer, predicate: Any, **params: Any) -> dict[str, Any]:
    """Poll the producer's view (bounded) until ``predicate(body)`` holds."""
    deadline = time.monotonic() + 30
    while not predicate(body := await figures(server, **params)):
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [s["id"] for s in body["sessions"]]


async def play_alpha(server: RunningServer, alpha: ReviewSession) -> dict[str, Any]:
    """Session A: p1 takes two rounds, p2 one fix, p3 a rejected and a pending version."""
    created = alpha.created["created_at"]
    t1, t2, t3 = (between(created, f) for f in (0.2, 0.5, 0.8))
    async with (
        server.client(alpha.id, alpha.tokens["editor"]) as editor,
        ApiClient(server.url, alpha.tokens["editor"]) as edit,
        ApiClient(server.url, alpha.tokens["approver"]) as approve,
    ):
        who = alpha.users["editor"]
        await put_pin(editor, "p1", who, t1)
        await put_pin(editor, "p2", who, t2, region=[10, 10, 20, 20])
        await put_pin(editor, "p3", who, t3)
        for pin in ("p1", "p2", "p3"):
            await wait_for_pin(server, alpha.id, pin)

        v1 = await upload_version(edit, alpha.id, "p1", (10, 200, 10))
        assert (await decide(approve, alpha.id, v1, "request_changes", "greener"))["state"] == (
            "changes_requested"
        )
        v2 = await upload_version(edit, alpha.id, "p1", (10, 250, 10))
        decided = await decide(approve, alpha.id, v2, "approve")
        a1 = decided["decisions"][alpha.users["approver"]]["at"]

        fixed = await fix(edit, editor, alpha.id, "p2", [10, 10, 20, 20])
        decided = await decide(approve, alpha.id, fixed, "approve")
        a2 = decided["decisions"][alpha.users["approver"]]["at"]

        v3 = await upload_version(edit, alpha.id, "p3", (0, 0, 250))
        assert (await decide(approve, alpha.id, v3, "reject"))["state"] == "rejected"
        await upload_version(edit, alpha.id, "p3", (0, 0, 200))
    return {"created": created, "t1": t1, "t2": t2, "a1": a1, "a2": a2}


async def test_figures_filters_and_sorting_follow_the_timeline(server: RunningServer) -> None:
    alpha = await server.new_session(title="Alpha hero shot")
    beta = await server.new_session(title="Beta banner")
    assert alpha.created["created_at"] < beta.created["created_at"]
    async with server.client(beta.id, beta.tokens["commenter"]) as commenter:
        await put_pin(commenter, "q1", beta.users["commenter"], beta.created["created_at"])
        await wait_for_pin(server, beta.id, "q1")
    t = await play_alpha(server, alpha)
    await until(server, lambda body: body["totals"]["pins"]["total"] == 4)

    before = time.time()
    body = await figures(server)
    after = time.time()
    assert body["rebuilding"] is False
    by_id = {s["id"]: s for s in body["sessions"]}
    a, b = by_id[alpha.id], by_id[beta.id]
    assert a["title"] == "Alpha hero shot" and a["created_at"] == t["created"]
    assert a["versions"] == {
        "total": 5,
        "pending": 1,
        "approved": 2,
        "changes_requested": 1,
        "rejected": 1,
    }
    assert a["pins"] == {"total": 3, "open": 1, "approved": 2}
    assert a["open_pins"] == 1
    # p1 needed two versions, p2 one.
    assert a["rounds_per_pin"] == 1.5
    to_approval = sorted([t["a1"] - t["t1"], t["a2"] - t["t2"]])
    assert a["median_time_to_approval"] == pytest.approx(sum(to_approval) / 2, abs=1e-6)
    assert a["time_in_review"] == pytest.approx(max(t["a1"], t["a2"]) - t["created"], abs=1e-6)
    assert a["approvals"] == [t["a1"], t["a2"]]
    assert a["last_approval"] == t["a2"]
    assert a["last_activity"] >= t["a2"]
    assert a["jobs"] == {"done": 1, "failed": 0, "cancelled": 0}

    assert b["versions"]["total"] == 0 and b["pins"] == {"total": 1, "open": 1, "approved": 0}
    assert b["rounds_per_pin"] is None and b["median_time_to_approval"] is None
    assert b["approvals"] == [] and b["jobs"] == NO_JOBS
    # Nothing approved yet: in review until now.
    assert before - beta.created["created_at"] <= b["time_in_review"]
    assert b["time_in_review"] <= after - beta.created["created_at"]

    totals = body["totals"]
    assert totals["sessions"] == 2
    assert totals["versions"] == a["versions"]
    assert totals["pins"] == {"total": 4, "open": 2, "approved": 2}
    assert totals["rounds_per_pin"] == 1.5
    assert totals["median_time_to_approval"] == pytest.approx(a["median_time_to_approval"])

    # One session, same figures.
    one = await server.admin.producer_session(alpha.id)
    assert {k: v for k, v in one.items() if k != "time_in_review"} == {
        k: v for k, v in a.items() if k != "time_in_review"
    }
    assert one["time_in_review"] == pytest.approx(a["time_in_review"])

    # Filters.
    assert ids(await figures(server, state="pending")) == [alpha.id]
    assert ids(await figures(server, state="approved")) == [alpha.id]
    assert ids(await figures(server, state="rejected")) == [alpha.id]
    assert ids(await figures(server, state="done")) == []
    assert set(ids(await figures(server, state="open"))) == {alpha.id, beta.id}
    assert set(ids(await figures(server, state="done,open"))) == {alpha.id, beta.id}
    assert ids(await figures(server, q="BETA")) == [beta.id]
    assert ids(await figures(server, q="%")) == []
    assert ids(await figures(server, since=beta.created["created_at"])) == [beta.id]
    assert ids(await figures(server, until=beta.created["created_at"])) == [alpha.id]
    filtered = await figures(server, q="beta")
    assert filtered["totals"]["sessions"] == 1 and filtered["totals"]["open_pins"] == 1
    assert filtered["totals"]["median_time_to_approval"] is None

    # Sorting and paging.
    assert ids(await figures(server, sort="title")) == [alpha.id, beta.id]
    assert ids(await figures(server, sort="-title")) == [beta.id, alpha.id]
    assert ids(await figures(server, sort="-created_at")) == [beta.id, alpha.id]
    # Sessions without a figure come last, whatever the direction.
    assert ids(await figures(server, sort="rounds_per_pin")) == [alpha.id, beta.id]
    assert ids(await figures(server, sort="-rounds_per_pin")) == [alpha.id, beta.id]
    page = await figures(server, sort="title", limit=1)
    assert ids(page) == [alpha.id] and page["totals"]["sessions"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"state": "bogus"},
        {"sort": "bogus"},
        {"sort": "-"},
        {"limit": "0"},
        {"limit": "many"},
        {"since": "yesterday"},
    ],
)
async def test_bad_producer_queries_are_refused(
    server: RunningServer, params: dict[str, str]
) -> None:
    with pytest.raises(ApiError) as err:
        await server.admin.producer(**params)
    assert err.value.status == 400


async def test_only_the_admin_sees_the_producer_view(
    server: RunningServer, session: ReviewSession
) -> None:
    for role in ("owner", "approver", "viewer"):
        async with ApiClient(server.url, session.tokens[role]) as api:
            for call in (api.producer(), api.producer_session(session.id)):
                with pytest.raises(ApiError) as err:
                    await call
                assert err.value.status == 403
    async with ApiClient(server.url, None) as anonymous:
        with pytest.raises(ApiError) as err:
            await anonymous.producer()
        assert err.value.status == 401
    with pytest.raises(ApiError) as err:
        await server.admin.producer_session("no-such-session")
    assert err.value.status == 404


async def test_the_index_is_rebuilt_from_the_documents(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with run_server(data) as server:
        alpha = await server.new_session(title="Made before the index")
        await server.new_session(title="Empty one")
        t = await play_alpha(server, alpha)
        before = {s["id"]: s for s in (await figures(server))["sessions"]}
    # As if these sessions predated the index: it is empty at the next start.
    with sqlite3.connect(data / "proofroom.sqlite3") as db:
        for table in ("producer_sessions", "producer_pins", "producer_layers", "producer_jobs"):
            db.execute(f"DELETE FROM {table}")
    async with run_server(data) as server:
        body = await until(server, lambda b: len(b["sessions"]) == 2 and not b["rebuilding"])
        after = {s["id"]: s for s in body["sessions"]}
        assert not await server.services.producer.needs_rebuild()
    assert set(after) == set(before)
    for sid, old in before.items():
        new = after[sid]
        for key in ("title", "created_at", "versions", "pins", "open_pins", "rounds_per_pin"):
            assert new[key] == old[key], key
        assert new["jobs"] == old["jobs"]
        assert new["approvals"] == old["approvals"]
        if old["median_time_to_approval"] is None:
            assert new["median_time_to_approval"] is None
        else:
            assert new["median_time_to_approval"] == pytest.approx(old["median_time_to_approval"])
    a = after[alpha.id]
    assert a["time_in_review"] == pytest.approx(max(t["a1"], t["a2"]) - t["created"])
    assert a["last_activity"] >= t["a2"]


async def variants_of(
    server: RunningServer, s: ReviewSession, pin_id: str, count: int
) -> list[str]:
    """Ask for one fix with ``count`` variants; their layer ids once all are published."""
    async with (
        server.client(s.id, s.tokens["editor"]) as editor,
        ApiClient(server.url, s.tokens["editor"]) as edit,
    ):
        reply = await edit.json(
            "POST",
            f"/api/sessions/{s.id}/pins/{pin_id}/fix",
            json={"region": [10, 10, 20, 20], "seed": 1, "variants": count},
        )
        layers = [f"l_{job}" for job in reply["jobs"]]
        await editor.wait_for(
            lambda: {lay["id"] for lay in editor.layers.to_py()} >= set(layers), timeout=60
        )
    return layers


async def test_a_round_is_one_fix_request_not_its_variants(tmp_path: Path) -> None:
    """Three variants of one request, the last one approved: one round, not three; a pin
    with a refused upload first, then a two-variant fix: two rounds. The same after a
    rebuild from the documents."""
    data = tmp_path / "data"
    async with run_server(data) as server:
        s = await server.new_session(title="Variants")
        async with server.client(s.id, s.tokens["editor"]) as editor:
            now = time.time()
            await put_pin(editor, "p1", s.users["editor"], now, region=[10, 10, 20, 20])
            await put_pin(editor, "p2", s.users["editor"], now, region=[10, 10, 20, 20])
        await wait_for_pin(server, s.id, "p2")
        first = await variants_of(server, s, "p1", 3)
        async with (
            ApiClient(server.url, s.tokens["editor"]) as edit,
            ApiClient(server.url, s.tokens["approver"]) as approve,
        ):
            layers = server.services.rooms.rooms[s.id].layers.to_py()
            newest = max(
                (lay for lay in layers if lay["id"] in first), key=lambda lay: lay["created_at"]
            )
            await decide(approve, s.id, newest["id"], "approve")
            refused = await upload_version(edit, s.id, "p2", (0, 0, 250))
            await decide(approve, s.id, refused, "reject")
            second = await variants_of(server, s, "p2", 2)
            await decide(approve, s.id, second[0], "approve")
        body = await until(server, lambda b: b["sessions"][0]["pins"]["approved"] == 2)
        assert body["sessions"][0]["rounds_per_pin"] == 1.5  # (1 + 2) / 2
    with sqlite3.connect(data / "proofroom.sqlite3") as db:
        for table in ("producer_sessions", "producer_pins", "producer_layers", "producer_jobs"):
            db.execute(f"DELETE FROM {table}")
    async with run_server(data) as server:
        body = await until(server, lambda b: len(b["sessions"]) == 1 and not b["rebuilding"])
        assert body["sessions"][0]["rounds_per_pin"] == 1.5
