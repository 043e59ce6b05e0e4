"""The producer's view: every session's figures from the index, filtered and sorted."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...shared.errors import BadRequest, NotFound
from ..store.db import Database

#: ``state=`` filters: sessions that have at least one version (or pin) in that state.
STATE_FILTERS: dict[str, str] = {
    "pending": "pending > 0",
    "approved": "approved > 0",
    "changes_requested": "changes_requested > 0",
    "rejected": "rejected > 0",
    #: Has open pins.
    "open": "open_pins > 0",
    #: Something approved, nothing pending, no open pins.
    "done": "approved > 0 AND pending = 0 AND open_pins = 0",
}

_ROUNDS = "CASE WHEN approved_pins > 0 THEN CAST(rounds_sum AS REAL) / approved_pins END"
_IN_REVIEW = "coalesce(last_approved_at, ?) - created_at"

#: ``sort=`` keys (prefix ``-`` for descending); unknown values are refused.
SORTS: dict[str, str] = {
    "created_at": "created_at",
    "last_activity": "last_activity",
    "title": "title COLLATE NOCASE",
    "versions": "versions",
    "pending": "pending",
    "approved": "approved",
    "open_pins": "open_pins",
    "rounds_per_pin": "rounds_per_pin",
    "median_time_to_approval": "median_to_approval",
    "time_in_review": "time_in_review",
}

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1000
#: Longest ``q=``: titles are short, and SQLite refuses LIKE patterns over 50,000 bytes
#: ("LIKE or GLOB pattern too complex") with an error that would otherwise be a 500.
MAX_Q_CHARS = 200


def _shown(value: str) -> str:
    """A query value quoted in an error message, cut short: it may be 100 KB long."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def parse_time(name: str, value: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise BadRequest(f"{name} must be a finite number of Unix seconds")
        return seconds
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be Unix seconds or an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@dataclass(frozen=True)
class ProducerQuery:
    """Filters, order and size of one producer's-view request."""

    states: tuple[str, ...] = ()
    #: Title substring (case-insensitive).
    q: str = ""
    #: Sessions created at or after / before this time (Unix seconds).
    since: float | None = None
    until: float | None = None
    sort: str = "-last_activity"
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ProducerQuery:
        """From query parameters; BadRequest names the first bad one."""
        states = tuple(s for s in (params.get("state") or "").split(",") if s)
        unknown = [s for s in states if s not in STATE_FILTERS]
        if unknown:
            raise BadRequest(
                f"state must be among {sorted(STATE_FILTERS)}, not {_shown(unknown[0])}"
            )
        sort = params.get("sort") or cls.sort
        if sort.removeprefix("-") not in SORTS:
            raise BadRequest(f"sort must be one of {sorted(SORTS)} (prefix - to reverse)")
        limit = cls.limit
        if params.get("limit"):
            try:
                limit = int(params["limit"])
            except ValueError:
                limit = 0
            if not 1 <= limit <= MAX_LIMIT:
                raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
        since = parse_time("since", params["since"]) if params.get("since") else None
        until = parse_time("until", params["until"]) if params.get("until") else None
        q = params.get("q") or ""
        if len(q) > MAX_Q_CHARS:
            raise BadRequest(f"q must be at most {MAX_Q_CHARS} characters")
        return cls(states, q, since, until, sort, limit)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if self.states:
            clauses.append("(" + " OR ".join(STATE_FILTERS[s] for s in self.states) + ")")
        if self.q:
            escaped = self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("title LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        if self.since is not None:
            clauses.append("created_at >= ?")
            args.append(self.since)
        if self.until is not None:
            clauses.append("created_at < ?")
            args.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def order(self) -> str:
        key = SORTS[self.sort.removeprefix("-")]
        direction = "DESC" if self.sort.startswith("-") else "ASC"
        return f" ORDER BY {key} IS NULL, {key} {direction}, id"


class ProducerView:
    """Reads the index (see :mod:`.producer`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def sessions(self, query: ProducerQuery, now: float | None = None) -> dict[str, Any]:
        """``{sessions: [...], totals: {...}}`` for the sessions that match ``query``."""
        now = time.time() if now is None else now
        where, args = query.where()
        rows = await self.db.fetchall(
            f"SELECT *, {_ROUNDS} AS rounds_per_pin, {_IN_REVIEW} AS time_in_review"
            f" FROM producer_sessions{where}{query.order()} LIMIT ?",
            [now, *args, query.limit],
        )
        return {
            "sessions": [session_json(r) for r in rows],
            "totals": await self._totals(where, args),
        }

    async def session(self, session_id: str, now: float | None = None) -> dict[str, Any]:
        """One session's figures; NotFound if the index does not know it."""
        now = time.time() if now is None else now
        row = await self.db.fetchone(
            f"SELECT *, {_ROUNDS} AS rounds_per_pin, {_IN_REVIEW} AS time_in_review"
            " FROM producer_sessions WHERE id = ?",
            (now, session_id),
        )
        if row is None:
            raise NotFound("no such session in the producer's index")
        return session_json(row)

    async def _totals(self, where: str, args: list[Any]) -> dict[str, Any]:
        row = await self.db.fetchone(
            "SELECT count(*) AS sessions, coalesce(sum(versions), 0) AS versions,"
            " coalesce(sum(pending), 0) AS pending, coalesce(sum(approved), 0) AS approved,"
            " coalesce(sum(changes_requested), 0) AS changes_requested,"
            " coalesce(sum(rejected), 0) AS rejected, coalesce(sum(pins), 0) AS pins,"
            " coalesce(sum(open_pins), 0) AS open_pins,"
            " coalesce(sum(approved_pins), 0) AS approved_pins,"
            " coalesce(sum(rounds_sum), 0) AS rounds_sum, max(last_activity) AS last_activity,"
            " coalesce(sum(revisions), 0) AS revisions,"
            " coalesce(sum(approved_revisions), 0) AS approved_revisions"
            f" FROM producer_sessions{where}",
            args,
        )
        assert row is not None
        median = await self.db.fetchone(
            "WITH d AS (SELECT first_approved_at - created_at AS d FROM producer_pins"
            " WHERE first_approved_at IS NOT NULL AND created_at IS NOT NULL"
            f" AND session_id IN (SELECT id FROM producer_sessions{where})),"
            " n AS (SELECT count(*) AS n FROM d)"
            " SELECT avg(d) FROM (SELECT d FROM d ORDER BY d"
            " LIMIT 2 - (SELECT n FROM n) % 2 OFFSET ((SELECT n FROM n) - 1) / 2)",
            args,
        )
        approved_pins = row["approved_pins"]
        return {
            "sessions": row["sessions"],
            "versions": _versions(row, total=row["versions"]),
            "pins": {"total": row["pins"], "open": row["open_pins"], "approved": approved_pins},
            "open_pins": row["open_pins"],
            "rounds_per_pin": row["rounds_sum"] / approved_pins if approved_pins else None,
            "median_time_to_approval": median[0] if median else None,
            "last_activity": row["last_activity"],
            "revisions": {"total": row["revisions"], "approved": row["approved_revisions"]},
        }


def _versions(row: sqlite3.Row, *, total: int) -> dict[str, int]:
    return {
        "total": total,
        "pending": row["pending"],
        "approved": row["approved"],
        "changes_requested": row["changes_requested"],
        "rejected": row["rejected"],
    }


def session_json(row: sqlite3.Row) -> dict[str, Any]:
    """One session's figures (times in Unix seconds, durations in seconds)."""
    return {
        "id": row["id"],
        "title": row["title"],
        "created_at": row["created_at"],
        "last_activity": row["last_activity"],
        "versions": _versions(row, total=row["versions"]),
        "pins": {"total": row["pins"], "open": row["open_pins"], "approved": row["approved_pins"]},
        "open_pins": row["open_pins"],
        "rounds_per_pin": row["rounds_per_pin"],
        "median_time_to_approval": row["median_to_approval"],
        "time_in_review": row["time_in_review"],
        "last_approval": row["last_approved_at"],
        "approvals": json.loads(row["approvals"]),
        "revisions": {"total": row["revisions"], "approved": row["approved_revisions"]},
        "jobs": {
            "done": row["jobs_done"],
            "failed": row["jobs_failed"],
            "cancelled": row["jobs_cancelled"],
        },
    }
