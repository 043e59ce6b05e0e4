"""The queue contract: every backend must pass these (the SQLite one here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proofroom.server.jobs import JobQueue, NewJob, SqliteJobQueue
from proofroom.server.store import Database
from proofroom.shared.enums import JobStatus
from proofroom.shared.errors import Conflict, NotFound

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


async def test_priority_then_round_robin_across_sessions(queue: JobQueue) -> None:
    await queue.enqueue([job(f"s1-{i}", "s1") for i in range(3)])
    await queue.enqueue([job(f"s2-{i}", "s2") for i in range(2)])
    await queue.enqueue([job("s3-0", "s3"), job("urgent", "s3", priority=5)])
    # Queue positions predict the claim order.
    order = [j.id for j in await queue.queued()]
    claimed = []
    while (claimed_job := await queue.claim("w", 30)) is not None:
        claimed.append(claimed_job.id)
    # Priority first; then sessions take turns (s3 was just served by the urgent job).
    assert claimed == ["urgent", "s1-0", "s2-0", "s3-0", "s1-1", "s2-1", "s1-2"]
    assert order == claimed


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
