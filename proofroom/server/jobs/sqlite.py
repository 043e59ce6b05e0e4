"""The embedded queue: a SQLite table behind the server's single write path."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ...shared.enums import JobStatus
from ...shared.errors import Conflict, NotFound
from ..store.db import Database
from .queue import Job, JobQueue, NewJob

_FINISHED = ("done", "failed", "cancelled")
_COLUMNS = (
    "id, session_id, pin_id, status, priority, payload, attempts, max_attempts, lease_owner,"
    " created_at, started_at, finished_at, error, layer_id, result"
)


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        session_id=row["session_id"],
        pin_id=row["pin_id"],
        status=JobStatus(row["status"]),
        priority=row["priority"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        lease_owner=row["lease_owner"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        layer_id=row["layer_id"],
        result=json.loads(row["result"]) if row["result"] else None,
    )


class SqliteJobQueue(JobQueue):
    """Jobs in the ``jobs`` table; one statement per state change, each atomic."""

    def __init__(self, db: Database, *, max_attempts: int = 3) -> None:
        super().__init__()
        self._db = db
        self._max_attempts = max_attempts

    async def enqueue(self, jobs: list[NewJob], *, wake: bool = True) -> list[Job]:
        now = time.time()
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO jobs (id, seq, session_id, pin_id, status, priority, payload,"
                " max_attempts, created_at)"
                " VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, 'queued', ?, ?,"
                " ?, ?)",
                (
                    j.id,
                    j.session_id,
                    j.pin_id,
                    j.priority,
                    json.dumps(j.payload),
                    self._max_attempts,
                    now,
                ),
            )
            for j in jobs
        ]
        await self._db.write(*statements)
        if wake:
            self.wakeup.set()
        # Everything about a new job is known here: no need to read the rows back.
        return [
            Job(
                id=j.id,
                session_id=j.session_id,
                pin_id=j.pin_id,
                status=JobStatus.QUEUED,
                priority=j.priority,
                payload=j.payload,
                attempts=0,
                max_attempts=self._max_attempts,
                lease_owner=None,
                created_at=now,
                started_at=None,
                finished_at=None,
                error=None,
                layer_id=None,
            )
            for j in jobs
        ]

    async def claim(self, owner: str, lease_seconds: float) -> Job | None:
        now = time.time()
        pick = (
            "SELECT j.id FROM jobs j LEFT JOIN queue_turns t ON t.session_id = j.session_id"
            " WHERE j.status = 'queued'"
            " ORDER BY j.priority DESC, COALESCE(t.last_claimed, 0), j.seq LIMIT 1"
        )
        result = await self._db.write(
            # The session served now goes to the back of the round-robin...
            (
                f"INSERT INTO queue_turns (session_id, last_claimed)"
                f" SELECT session_id, (SELECT COALESCE(MAX(last_claimed), 0) + 1"
                f"   FROM queue_turns) FROM jobs WHERE id = ({pick})"
                f" ON CONFLICT(session_id) DO UPDATE SET last_claimed = excluded.last_claimed",
                (),
            ),
            # ...and its job is leased, in the same transaction.
            (
                f"UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires = ?,"
                f" attempts = attempts + 1, started_at = ?"
                f" WHERE id = (SELECT j.id FROM jobs j WHERE j.status = 'queued'"
                f"   AND j.session_id = (SELECT session_id FROM queue_turns"
                f"     ORDER BY last_claimed DESC LIMIT 1)"
                f"   ORDER BY j.priority DESC, j.seq LIMIT 1)"
                f" RETURNING {_COLUMNS}",
                (owner, now + lease_seconds, now),
            ),
        )
        return _job(result.rows[0]) if result.rows else None

    async def heartbeat(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        result = await self._db.write(
            (
                "UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease_owner = ?"
                " AND status = 'running' RETURNING id",
                (time.time() + lease_seconds, job_id, owner),
            )
        )
        return bool(result.rows)

    async def complete(
        self, job_id: str, owner: str, layer_id: str, result: dict[str, Any]
    ) -> Job | None:
        written = await self._db.write(
            (
                f"UPDATE jobs SET status = 'done', finished_at = ?, layer_id = ?, result = ?,"
                f" lease_owner = NULL, lease_expires = NULL"
                f" WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING {_COLUMNS}",
                (time.time(), layer_id, json.dumps(result), job_id, owner),
            )
        )
        return _job(written.rows[0]) if written.rows else None

    async def mark_published(self, job_id: str) -> None:
        await self._db.write(
            ("UPDATE jobs SET published = 1, result = NULL WHERE id = ?", (job_id,))
        )

    async def unpublished(self) -> list[Job]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM jobs WHERE status = 'done' AND published = 0 ORDER BY seq"
        )
        return [_job(r) for r in rows]

    async def fail(self, job_id: str, owner: str, error: str, *, retry: bool) -> Job | None:
        result = await self._db.write(
            (
                f"UPDATE jobs SET"
                f" status = CASE WHEN ? AND attempts < max_attempts"
                f"   THEN 'queued' ELSE 'failed' END,"
                f" finished_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE ? END,"
                f" error = ?, lease_owner = NULL, lease_expires = NULL"
                f" WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING {_COLUMNS}",
                (retry, retry, time.time(), error[:1000], job_id, owner),
            )
        )
        if result.rows and retry:
            self.wakeup.set()
        return _job(result.rows[0]) if result.rows else None

    async def cancel(self, job_id: str) -> Job:
        result = await self._db.write(
            (
                f"UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_owner = NULL,"
                f" lease_expires = NULL WHERE id = ? AND status IN ('queued', 'running')"
                f" RETURNING {_COLUMNS}",
                (time.time(), job_id),
            )
        )
        if result.rows:
            return _job(result.rows[0])
        job = await self.get(job_id)
        if job is None:
            raise NotFound("no such job")
        raise Conflict(f"the job is already {job.status.value}")

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _job(row) if row else None

    async def expire_leases(self, now: float | None = None) -> list[Job]:
        now = time.time() if now is None else now
        result = await self._db.write(
            (
                f"UPDATE jobs SET"
                f" status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,"
                f" error = CASE WHEN attempts < max_attempts THEN error"
                f"   ELSE 'gave up after ' || attempts || ' attempts (worker lost)' END,"
                f" finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ? END,"
                f" lease_owner = NULL, lease_expires = NULL"
                f" WHERE status = 'running' AND lease_expires < ? RETURNING {_COLUMNS}",
                (now, now),
            )
        )
        if result.rows:
            self.wakeup.set()
        return [_job(r) for r in result.rows]

    async def release_owner(self, owner_prefix: str, keep: str) -> list[Job]:
        # A dead worker of this node cannot finish its job: make its lease expire now.
        await self._db.write(
            (
                "UPDATE jobs SET lease_expires = 0 WHERE status = 'running'"
                " AND lease_owner LIKE ? || '%' AND lease_owner != ?",
                (owner_prefix, keep),
            )
        )
        return await self.expire_leases()

    async def queued(self) -> list[Job]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS}, COALESCE(t.last_claimed, 0) AS turn FROM jobs j"
            f" LEFT JOIN queue_turns t USING (session_id)"
            f" WHERE status = 'queued' ORDER BY priority DESC, seq"
        )
        return simulate_claims([(_job(r), r["turn"]) for r in rows])


def simulate_claims(jobs: list[tuple[Job, float]]) -> list[Job]:
    """The order :meth:`SqliteJobQueue.claim` would take these queued jobs in.

    ``jobs`` are (job, its session's last turn), sorted by priority then enqueue order.
    """
    order: list[Job] = []
    turns = {job.session_id: turn for job, turn in jobs}
    pending = [job for job, _ in jobs]
    next_turn = max(turns.values(), default=0) + 1
    while pending:
        top = pending[0].priority
        candidates = [j for j in pending if j.priority == top]
        pick = min(candidates, key=lambda j: turns[j.session_id])  # stable: oldest seq wins
        order.append(pick)
        pending.remove(pick)
        turns[pick.session_id] = next_turn
        next_turn += 1
    return order
