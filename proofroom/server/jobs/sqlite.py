"""The embedded queue: a SQLite table behind the server's single write path."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ...shared.enums import JobKind, JobStatus
from ...shared.errors import Conflict, NotFound, RateLimited
from ..store.db import Database, Statement
from .queue import LANES, Job, JobQueue, NewJob

#: The statuses a job holds until it finishes: what the per-session cap counts.
_UNFINISHED = "'queued', 'running'"
_INSERT_VALUES = re.compile(r"^\s*(INSERT INTO \w+ \([^)]*\))\s+VALUES\s*(\(.*\))\s*$", re.S | re.I)
_COLUMNS = (
    "id, session_id, pin_id, status, priority, payload, attempts, max_attempts, lease_owner,"
    " created_at, started_at, finished_at, error, layer_id, result, kind, engine, lane"
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
        kind=JobKind(row["kind"]),
        engine=row["engine"],
        lane=row["lane"],
    )


def only_if(statement: Statement, condition: str, params: Sequence[Any]) -> Statement:
    """``INSERT INTO t (...) VALUES (...)`` rewritten to insert only while ``condition`` holds.

    The rows that go with a queue change (its audit row) run just before the change, in the
    same transaction, under the same condition: both happen or neither does.
    """
    sql, values = statement
    match = _INSERT_VALUES.match(sql)
    if match is None:
        raise ValueError(f"only a single-row INSERT ... VALUES can go with a change: {sql!r}")
    head, row = match.groups()
    return (f"{head} SELECT * FROM (VALUES {row}) WHERE {condition}", (*values, *params))


class SqliteJobQueue(JobQueue):
    """Jobs in the ``jobs`` table; one statement per state change, each atomic."""

    def __init__(
        self, db: Database, *, max_attempts: int = 3, max_queued_per_session: int | None = None
    ) -> None:
        super().__init__()
        self._db = db
        self._max_attempts = max_attempts
        self._cap = max_queued_per_session

    async def enqueue(
        self, jobs: list[NewJob], *, wake: bool = True, also: Sequence[Statement] = ()
    ) -> list[Job]:
        if not jobs:
            return []
        now = time.time()
        # One statement inserts every job or none: the cap's count and the inserts see the
        # same rows (the single write path runs nothing in between), so concurrent requests
        # cannot overshoot it, and a refused request leaves nothing behind.
        for j in jobs:
            if j.lane not in LANES:
                raise ValueError(f"unknown lane {j.lane!r}; one of {LANES}")
        values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?, ?)" for _ in jobs)
        params: list[Any] = []
        for n, j in enumerate(jobs, start=1):
            params += [j.id, n, j.session_id, j.pin_id, j.priority, json.dumps(j.payload)]
            params += [j.kind.value, j.engine, j.lane]
        room, room_params = self._room_for(jobs)
        insert = (
            "INSERT INTO jobs (id, seq, session_id, pin_id, status, priority, payload,"
            " max_attempts, created_at, kind, engine, lane)"
            " SELECT v.column1, (SELECT COALESCE(MAX(seq), 0) FROM jobs) + v.column2,"
            " v.column3, v.column4, 'queued', v.column5, v.column6, ?, ?,"
            " v.column7, v.column8, v.column9"
            f" FROM (VALUES {values}) AS v WHERE {room} RETURNING id",
            (self._max_attempts, now, *params, *room_params),
        )
        guarded = [only_if(s, room, room_params) for s in also]
        written = await self._db.write(*guarded, insert)
        if not written.rows:
            raise RateLimited(await self._cap_message(jobs))
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
                kind=j.kind,
                engine=j.engine,
                lane=j.lane,
            )
            for j in jobs
        ]

    def _room_for(self, jobs: list[NewJob]) -> tuple[str, tuple[Any, ...]]:
        """SQL that holds when every session of ``jobs`` has room for its new ones."""
        if self._cap is None:
            return "1", ()
        wanted = Counter(j.session_id for j in jobs)
        batch = ", ".join("(?, ?)" for _ in wanted)
        return (
            f"NOT EXISTS (SELECT 1 FROM (VALUES {batch}) AS b WHERE b.column2 +"
            " (SELECT COUNT(*) FROM jobs q WHERE q.session_id = b.column1"
            f" AND q.status IN ({_UNFINISHED})) > ?)",
            (*(x for pair in wanted.items() for x in pair), self._cap),
        )

    async def _cap_message(self, jobs: list[NewJob]) -> str:
        wanted = Counter(j.session_id for j in jobs)
        for session_id, count in wanted.items():
            row = await self._db.fetchone(
                f"SELECT COUNT(*) AS n FROM jobs WHERE session_id = ?"
                f" AND status IN ({_UNFINISHED})",
                (session_id,),
            )
            waiting = row["n"] if row else 0
            if waiting + count > (self._cap or 0):
                return (
                    f"the session already has {waiting} unfinished jobs and at most"
                    f" {self._cap} may wait at once, so {count} more cannot be queued (wait"
                    f" for some to finish, or cancel some)"
                )
        return f"at most {self._cap} unfinished jobs per session; try again"

    async def claim(self, owner: str, lease_seconds: float, lane: str = "local") -> Job | None:
        now = time.time()
        pick = (
            # The session served longest ago (never served counts as longest ago; ties go
            # to the oldest job)...
            "SELECT j.id FROM jobs j LEFT JOIN queue_turns t ON t.session_id = j.session_id"
            " WHERE j.status = 'queued' AND j.lane = ?"
            " ORDER BY COALESCE(t.last_claimed, 0), j.seq LIMIT 1"
        )
        result = await self._db.write(
            # ...goes to the back of the round-robin...
            (
                f"INSERT INTO queue_turns (session_id, last_claimed)"
                f" SELECT session_id, (SELECT COALESCE(MAX(last_claimed), 0) + 1"
                f"   FROM queue_turns) FROM jobs WHERE id = ({pick})"
                f" ON CONFLICT(session_id) DO UPDATE SET last_claimed = excluded.last_claimed",
                (lane,),
            ),
            # ...and its most urgent job is leased, in the same transaction.
            (
                f"UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires = ?,"
                f" attempts = attempts + 1, started_at = ?"
                f" WHERE id = (SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.lane = ?"
                f"   AND j.session_id = (SELECT session_id FROM queue_turns"
                f"     ORDER BY last_claimed DESC LIMIT 1)"
                f"   ORDER BY j.priority DESC, j.seq LIMIT 1)"
                f" RETURNING {_COLUMNS}",
                (owner, now + lease_seconds, now, lane),
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

    async def cancel(self, job_id: str, *, also: Sequence[Statement] = ()) -> Job:
        cancellable = "EXISTS (SELECT 1 FROM jobs WHERE id = ? AND status IN ('queued', 'running'))"
        result = await self._db.write(
            *(only_if(s, cancellable, (job_id,)) for s in also),
            (
                f"UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_owner = NULL,"
                f" lease_expires = NULL WHERE id = ? AND status IN ('queued', 'running')"
                f" RETURNING {_COLUMNS}",
                (time.time(), job_id),
            ),
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
            f" WHERE status = 'queued' ORDER BY seq"
        )
        jobs = [(_job(r), r["turn"]) for r in rows]
        return [
            job
            for lane in LANES
            for job in simulate_claims([(j, turn) for j, turn in jobs if j.lane == lane])
        ]


def simulate_claims(jobs: list[tuple[Job, float]]) -> list[Job]:
    """The order :meth:`SqliteJobQueue.claim` would take these queued jobs in.

    ``jobs`` are (job, its session's last turn) in enqueue order.
    """
    turns = {job.session_id: turn for job, turn in jobs}
    # Each session's jobs: most urgent first, then in enqueue order (the position breaks ties).
    waiting: dict[str, list[tuple[int, int, Job]]] = {}
    for position, (job, _) in enumerate(jobs):
        waiting.setdefault(job.session_id, []).append((-job.priority, position, job))
    for queue in waiting.values():
        queue.sort(key=lambda item: item[:2])
    order: list[Job] = []
    next_turn = max(turns.values(), default=0) + 1
    while waiting:
        # The session served longest ago; a tie goes to the one whose oldest job is oldest.
        session = min(waiting, key=lambda sid: (turns[sid], min(item[1] for item in waiting[sid])))
        queue = waiting[session]
        order.append(queue.pop(0)[2])
        if not queue:
            del waiting[session]
        turns[session] = next_turn
        next_turn += 1
    return order
