"""The queue contract: every backend must pass these (the SQLite one here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proofroom.server.jobs import JobQueue, NewJob, SqliteJobQueue
from proofroom.server.store import Database
from proofroom.shared.enums import JobStatus
from proofroom.shared.errors import Conflict, NotFound, RateLimited

SESSIONS = ("s1", "s2", "s3")


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[JobQueue]:
    async with Database(tmp_path / "q.sqlite3") as db:
        for sid in SESSIONS:
            await db.write(
                (
                    "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                    (sid, "t", 1, 1, "b", 0.0, "admin", 1),
                )
            )
        yield SqliteJobQueue(db, max_attempts=2)


def job(job_id: str, session: str = "s1", priority: int = 0) -> NewJob:
    return NewJob(job_id, session, "pin", {"n": job_id}, priority)


async def test_enqueue_claim_complete(queue: JobQueue) -> None:
    [queued] = await queue.enqueue([job("a")])
    assert queued.status is JobStatus.QUEUED and queued.payload == {"n": "a"}
    assert queue.wakeup.is_set()
    claimed = await queue.claim("w1", 30)
    assert claimed is not None and claimed.id == "a" and claimed.status is JobStatus.RUNNING
    assert claimed.attempts == 1 and claimed.lease_owner == "w1"
    assert await queue.claim("w2", 30) is None
    assert await queue.heartbeat("a", "w1", 30)
    assert not await queue.heartbeat("a", "w2", 30)
    assert await queue.complete("a", "w2", "l_a", {}) is None  # not the owner
    done = await queue.complete("a", "w1", "l_a", {"id": "l_a"})
    assert done is not None and done.status is JobStatus.DONE and done.layer_id == "l_a"
    assert [j.id for j in await queue.unpublished()] == ["a"]
    await queue.mark_published("a")
    assert await queue.unpublished() == []


async def test_sessions_take_turns_and_priority_orders_within_one(queue: JobQueue) -> None:
    await queue.enqueue([job(f"s1-{i}", "s1") for i in range(3)])
    await queue.enqueue([job(f"s2-{i}", "s2") for i in range(2)])
    await queue.enqueue([job("s3-0", "s3"), job("urgent", "s3", priority=5)])
    # Queue positions predict the claim order.
    order = [j.id for j in await queue.queued()]
    claimed = []
    while (claimed_job := await queue.claim("w", 30)) is not None:
        claimed.append(claimed_job.id)
    # Sessions take turns (oldest job first among those never served); within s3 the
    # urgent job goes first, but it does not jump the other sessions' turns.
    assert claimed == ["s1-0", "s2-0", "urgent", "s1-1", "s2-1", "s3-0", "s1-2"]
    assert order == claimed


async def test_a_high_priority_flood_does_not_starve_another_session(queue: JobQueue) -> None:
    await queue.enqueue([job(f"a-{i}", "s1", priority=10) for i in range(20)])
    first = await queue.claim("w", 30)
    assert first is not None and first.id == "a-0"
    await queue.enqueue([job("b", "s2", priority=-10)])
    assert [j.id for j in await queue.queued()][:2] == ["b", "a-1"]
    second = await queue.claim("w", 30)
    assert second is not None and second.id == "b"


async def test_the_per_session_cap_counts_unfinished_jobs_and_queues_all_or_none(
    tmp_path: Path,
) -> None:
    async with Database(tmp_path / "cap.sqlite3") as db:
        for sid in SESSIONS:
            await db.write(
                (
                    "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                    (sid, "t", 1, 1, "b", 0.0, "admin", 1),
                )
            )
        queue = SqliteJobQueue(db, max_queued_per_session=3)
        audit = ("INSERT INTO audit (session_id, at, actor, action) VALUES (?,?,?,?)",)

        def row(n: int) -> tuple[str, tuple[object, ...]]:
            return (audit[0], ("s1", float(n), "u", f"request {n}"))

        assert len(await queue.enqueue([job("a"), job("b")], also=[row(1)])) == 2
        with pytest.raises(RateLimited) as err:  # 2 + 2 > 3: neither job, nor its audit row
            await queue.enqueue([job("c"), job("d")], also=[row(2)])
        assert "2 unfinished" in err.value.message and "at most 3" in err.value.message
        # Another session has its own allowance; a batch over several is checked per session.
        assert len(await queue.enqueue([job("c"), job("x", "s2"), job("y", "s2")])) == 3
        with pytest.raises(RateLimited):
            await queue.enqueue([job("z", "s2"), job("e", "s1")])
        # A running job still counts; a finished one does not.
        running = await queue.claim("w", 30)
        assert running is not None and running.session_id == "s1"
        with pytest.raises(RateLimited):
            await queue.enqueue([job("e")])
        await queue.complete(running.id, "w", "l", {})
        assert len(await queue.enqueue([job("e")], also=[row(3)])) == 1
        ids = [r["id"] for r in await db.fetchall("SELECT id FROM jobs ORDER BY seq")]
        assert ids == ["a", "b", "c", "x", "y", "e"]
        actions = [r["action"] for r in await db.fetchall("SELECT action FROM audit")]
        assert actions == ["request 1", "request 3"]


async def test_expired_lease_is_retried_then_failed(queue: JobQueue) -> None:
    await queue.enqueue([job("a")])
    first = await queue.claim("dead-worker", lease_seconds=-1)
    assert first is not None
    [requeued] = await queue.expire_leases()
    assert requeued.status is JobStatus.QUEUED
    second = await queue.claim("dead-again", lease_seconds=-1)
    assert second is not None and second.attempts == 2
    [failed] = await queue.expire_leases()
    assert failed.status is JobStatus.FAILED and "gave up after 2 attempts" in (failed.error or "")
    assert await queue.claim("w", 30) is None


async def test_a_dead_local_worker_is_released_at_once(queue: JobQueue) -> None:
    await queue.enqueue([job("a"), job("b", "s2")])
    assert await queue.claim("embedded:111:old", 3600) is not None
    assert await queue.claim("elsewhere:1", 3600) is not None
    released = await queue.release_owner("embedded:", keep="embedded:222:new")
    assert [j.id for j in released] == ["a"]
    again = await queue.claim("embedded:222:new", 30)
    assert again is not None and again.id == "a" and again.attempts == 2


async def test_fail_with_and_without_retry(queue: JobQueue) -> None:
    await queue.enqueue([job("a"), job("b")])
    a = await queue.claim("w", 30)
    assert a is not None and a.id == "a"
    retried = await queue.fail("a", "w", "worker crashed", retry=True)
    assert retried is not None and retried.status is JobStatus.QUEUED
    again = await queue.claim("w", 30)
    assert again is not None and again.id == "a" and again.attempts == 2
    spent = await queue.fail("a", "w", "crashed again", retry=True)  # no attempts left
    assert spent is not None and spent.status is JobStatus.FAILED
    b = await queue.claim("w", 30)
    assert b is not None and b.id == "b"
    failed = await queue.fail("b", "w", "bad mask", retry=False)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error == "bad mask"


async def test_cancel(queue: JobQueue) -> None:
    await queue.enqueue([job("queued"), job("running", "s2"), job("done", "s3")])
    cancelled = await queue.cancel("queued")
    assert cancelled.status is JobStatus.CANCELLED
    running = await queue.claim("w", 30)
    assert running is not None
    assert (await queue.cancel(running.id)).status is JobStatus.CANCELLED
    # A cancelled job cannot be completed, so it can never yield a layer.
    assert await queue.complete(running.id, "w", "l", {}) is None
    assert not await queue.heartbeat(running.id, "w", 30)
    last = await queue.claim("w", 30)
    assert last is not None
    await queue.complete(last.id, "w", "l", {})
    with pytest.raises(Conflict):
        await queue.cancel(last.id)
    with pytest.raises(NotFound):
        await queue.cancel("nope")


async def test_a_cancels_audit_row_commits_only_with_the_cancellation(queue: JobQueue) -> None:
    def audit_row(target: str) -> tuple[str, tuple[object, ...]]:
        return (
            "INSERT INTO audit (session_id, at, actor, action, target) VALUES (?,?,?,?,?)",
            ("s1", 1.0, "u", "job.cancel", target),
        )

    await queue.enqueue([job("a"), job("b")])
    await queue.cancel("a", also=[audit_row("a")])
    claimed = await queue.claim("w", 30)
    assert claimed is not None and claimed.id == "b"
    await queue.complete("b", "w", "l_b", {})
    for finished in ("a", "b"):  # already cancelled, already done: no row either
        with pytest.raises(Conflict):
            await queue.cancel(finished, also=[audit_row(finished)])
    assert isinstance(queue, SqliteJobQueue)
    rows = await queue._db.fetchall("SELECT target FROM audit WHERE action = 'job.cancel'")
    assert [r["target"] for r in rows] == ["a"]


async def test_a_job_keeps_its_kind_engine_and_lane_and_lanes_are_claimed_apart(
    queue: JobQueue,
) -> None:
    from proofroom.shared.enums import JobKind

    local = NewJob("local", "s1", "pin", {}, engine="fill")
    hosted = [NewJob(f"h{i}", "s1", "pin", {}, engine="gemini", lane="hosted") for i in range(2)]
    await queue.enqueue([*hosted, local])
    stored = await queue.get("h0")
    assert stored is not None and (stored.kind, stored.engine, stored.lane) == (
        JobKind.EDIT,
        "gemini",
        "hosted",
    )
    # Positions count within a lane: the local job is first in its own line.
    assert [(j.id, j.lane) for j in await queue.queued()] == [
        ("local", "local"),
        ("h0", "hosted"),
        ("h1", "hosted"),
    ]
    claimed = await queue.claim("w", 30)  # the local lane by default
    assert claimed is not None and claimed.id == "local" and claimed.engine == "fill"
    assert await queue.claim("w", 30) is None
    first = await queue.claim("w", 30, "hosted")
    assert first is not None and first.id == "h0" and first.lane == "hosted"
    with pytest.raises(ValueError, match="unknown lane"):
        await queue.enqueue([NewJob("x", "s1", "pin", {}, lane="gpu")])
