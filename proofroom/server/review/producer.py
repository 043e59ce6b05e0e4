"""The producer's index: per-session figures in SQLite, kept up to date from review events.

Detail rows (pins, layers, finished jobs) follow the events; after each event the session's
summary row is recomputed from its own detail rows (a few indexed counts), so the producer's
view reads one row per session however many versions there are. The listener only queues
writes on the database's single write path: publishing an event never waits for SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from pycrdt import Map

from ...shared import schema
from ...shared.enums import Decision, LayerState
from ..rooms import RoomManager
from ..store.db import Database, Statement
from . import events

logger = logging.getLogger(__name__)

#: The events the index reads.
INDEXED = frozenset(
    {
        events.SESSION_CREATED,
        events.PIN_CREATED,
        events.PIN_RESOLVED,
        events.PIN_REOPENED,
        events.LAYER_CREATED,
        events.LAYER_DECISION,
        events.REVISION_CREATED,
        events.REVISION_DECISION,
        events.JOB_DONE,
        events.JOB_FAILED,
        events.JOB_CANCELLED,
    }
)
_JOB_STATUS = {
    events.JOB_DONE: "done",
    events.JOB_FAILED: "failed",
    events.JOB_CANCELLED: "cancelled",
}

_ENSURE_SESSION = """
INSERT OR IGNORE INTO producer_sessions (id, title, created_at, last_activity)
VALUES (?1, coalesce((SELECT title FROM sessions WHERE id = ?1), ''),
        coalesce((SELECT created_at FROM sessions WHERE id = ?1), ?2), ?2)
"""

_APPROVED_PINS = (
    "FROM producer_pins WHERE session_id = ?1"
    " AND first_approved_at IS NOT NULL AND created_at IS NOT NULL"
)

# Recompute one session's summary from its detail rows; ?1 session id, ?2 activity time.
# The median uses LIMIT/OFFSET on the sorted durations (one or the two middle values).
# Approval times go into JSON with 17 significant digits (SQLite's default keeps 15), so
# they read back as exactly the floats stored.
_REFRESH = f"""
UPDATE producer_sessions SET
    versions = (SELECT count(*) FROM producer_layers WHERE session_id = ?1),
    pending = (SELECT count(*) FROM producer_layers WHERE session_id = ?1 AND state = 'pending'),
    approved = (SELECT count(*) FROM producer_layers WHERE session_id = ?1 AND state = 'approved'),
    changes_requested = (SELECT count(*) FROM producer_layers
                         WHERE session_id = ?1 AND state = 'changes_requested'),
    rejected = (SELECT count(*) FROM producer_layers WHERE session_id = ?1 AND state = 'rejected'),
    pins = (SELECT count(*) FROM producer_pins WHERE session_id = ?1),
    open_pins = (SELECT count(*) FROM producer_pins WHERE session_id = ?1 AND status = 'open'),
    approved_pins = (SELECT count(*) FROM producer_pins
                     WHERE session_id = ?1 AND first_approved_at IS NOT NULL),
    rounds_sum = (SELECT coalesce(sum(rounds), 0) FROM producer_pins
                  WHERE session_id = ?1 AND first_approved_at IS NOT NULL),
    median_to_approval = (
        SELECT avg(d) FROM (
            SELECT first_approved_at - created_at AS d {_APPROVED_PINS} ORDER BY d
            LIMIT 2 - (SELECT count(*) {_APPROVED_PINS}) % 2
            OFFSET ((SELECT count(*) {_APPROVED_PINS}) - 1) / 2
        )
    ),
    last_approved_at = (SELECT max(approved_at) FROM producer_layers
                        WHERE session_id = ?1 AND state = 'approved'),
    approvals = (SELECT json_group_array(json(printf('%!.17g', approved_at))) FROM (
                     SELECT approved_at FROM producer_layers
                     WHERE session_id = ?1 AND state = 'approved' AND approved_at IS NOT NULL
                     ORDER BY approved_at)),
    revisions = (SELECT count(*) FROM producer_revisions WHERE session_id = ?1),
    approved_revisions = (SELECT count(*) FROM producer_revisions
                          WHERE session_id = ?1 AND state = 'approved'),
    jobs_done = (SELECT count(*) FROM producer_jobs WHERE session_id = ?1 AND status = 'done'),
    jobs_failed = (SELECT count(*) FROM producer_jobs
                   WHERE session_id = ?1 AND status = 'failed'),
    jobs_cancelled = (SELECT count(*) FROM producer_jobs
                      WHERE session_id = ?1 AND status = 'cancelled'),
    last_activity = max(last_activity, ?2)
WHERE id = ?1
"""

# A pin's creation time comes from its author's client: keep it between the session's
# creation and the moment the server saw the pin, so a wrong clock cannot skew the figures.
_INSERT_PIN = """
INSERT INTO producer_pins (session_id, pin_id, created_at, status)
VALUES (?1, ?2,
        min(?4, max(coalesce(?3, ?4),
                    coalesce((SELECT created_at FROM producer_sessions WHERE id = ?1), ?4))),
        ?5)
ON CONFLICT (session_id, pin_id) DO NOTHING
"""

_INSERT_LAYER = """
INSERT INTO producer_layers (session_id, layer_id, pin_id, created_at, state, fix)
VALUES (?1, ?2, ?3, ?4, 'pending', ?5)
ON CONFLICT (session_id, layer_id) DO UPDATE SET fix = coalesce(fix, excluded.fix)
"""

_INSERT_REVISION = """
INSERT INTO producer_revisions (session_id, revision_id, kind, state, created_at)
VALUES (?1, ?2, ?3, ?4, ?5)
ON CONFLICT (session_id, revision_id) DO NOTHING
"""

# In SET expressions ``state`` is still the old value.
_DECIDE_LAYER = """
UPDATE producer_layers SET
    state = ?3,
    approved_at = CASE WHEN ?3 != 'approved' THEN NULL
                       WHEN state = 'approved' THEN coalesce(approved_at, ?4)
                       ELSE ?4 END
WHERE session_id = ?1 AND layer_id = ?2
"""

# Rounds: the pin's fix requests up to and including the one whose version was approved
# first. The variants of one request are one round (they share ``fix``); a version without
# one (an upload, or a layer the index never saw created) is a round of its own.
_FIRST_APPROVAL = """
UPDATE producer_pins SET
    first_approved_at = ?3,
    rounds = (SELECT count(DISTINCT coalesce(fix, layer_id)) FROM producer_layers
              WHERE session_id = ?1 AND pin_id = ?2 AND created_at <= (
                  SELECT created_at FROM producer_layers WHERE session_id = ?1 AND layer_id = ?4))
WHERE session_id = ?1 AND pin_id = ?2 AND first_approved_at IS NULL
"""


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("producer index write failed: %r", future.exception())


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class ProducerIndex:
    """Maintains the index; :meth:`on_event` is an :class:`~.events.EventBus` listener."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: True while :meth:`rebuild` runs.
        self.rebuilding = False
        #: Index writes queued by :meth:`on_event` and not committed yet.
        self._pending: set[asyncio.Future[Any]] = set()

    # -- live maintenance -----------------------------------------------------------------

    def on_event(self, event: events.Event) -> None:
        """Queue the index writes for one event (never waits)."""
        if event.type not in INDEXED:
            return
        future = self.db.submit(*self.statements(event), self.refresh(event.session_id, event.at))
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        future.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait until every event seen so far is committed to the index (at once when
        nothing is outstanding: the dashboard reads after each burst of events)."""
        if self._pending:
            await asyncio.wait(list(self._pending))

    async def ingest(self, batch: Iterable[events.Event]) -> None:
        """Index many events in one commit, refreshing each session's figures once."""
        statements: list[Statement] = []
        touched: dict[str, float] = {}
        for event in batch:
            if event.type in INDEXED:
                statements += self.statements(event)
                touched[event.session_id] = max(event.at, touched.get(event.session_id, 0.0))
        statements += [self.refresh(sid, at) for sid, at in touched.items()]
        if statements:
            await self.db.write(*statements)

    def statements(self, event: events.Event) -> list[Statement]:
        """The detail writes for one event (without the summary refresh)."""
        sid, data = event.session_id, event.data
        at = _number(data.get("at")) or event.at
        out: list[Statement] = [(_ENSURE_SESSION, (sid, at))]
        if event.type == events.SESSION_CREATED:
            out.append(
                (
                    "UPDATE producer_sessions SET title = ?2, created_at = ?3 WHERE id = ?1",
                    (sid, _text(data.get("title")) or "", at),
                )
            )
        elif event.type == events.PIN_CREATED:
            pin = _text(data.get("pin"))
            if pin is not None:
                status = _text(data.get("status")) or "open"
                out.append((_INSERT_PIN, (sid, pin, _number(data.get("created_at")), at, status)))
        elif event.type in (events.PIN_RESOLVED, events.PIN_REOPENED):
            status = "resolved" if event.type == events.PIN_RESOLVED else "open"
            out.append(
                (
                    "UPDATE producer_pins SET status = ? WHERE session_id = ? AND pin_id = ?",
                    (status, sid, _text(data.get("pin"))),
                )
            )
        elif event.type == events.LAYER_CREATED:
            layer = _text(data.get("layer"))
            if layer is not None:
                fix = _text(data.get("fix"))
                out.append((_INSERT_LAYER, (sid, layer, _text(data.get("pin")), at, fix)))
        elif event.type == events.LAYER_DECISION:
            out += self._decision(sid, data, at)
        elif event.type == events.REVISION_CREATED:
            revision = _text(data.get("revision"))
            if revision is not None:
                kind = _text(data.get("kind")) or "upscale"
                out.append((_INSERT_REVISION, (sid, revision, kind, "pending", at)))
        elif event.type == events.REVISION_DECISION:
            revision, state = _text(data.get("revision")), _text(data.get("state"))
            if revision is not None and state is not None:
                out.append(
                    (
                        "UPDATE producer_revisions SET state = ?"
                        " WHERE session_id = ? AND revision_id = ?",
                        (state, sid, revision),
                    )
                )
        elif event.type in _JOB_STATUS:
            job = _text(data.get("job"))
            if job is not None:
                out.append(
                    (
                        "INSERT INTO producer_jobs (session_id, job_id, status) VALUES (?,?,?)"
                        " ON CONFLICT (session_id, job_id) DO UPDATE SET status = excluded.status",
                        (sid, job, _JOB_STATUS[event.type]),
                    )
                )
        return out

    @staticmethod
    def _decision(sid: str, data: dict[str, Any], at: float) -> list[Statement]:
        layer, pin, state = _text(data.get("layer")), _text(data.get("pin")), data.get("state")
        if layer is None or state not in {s.value for s in LayerState}:
            return []
        out: list[Statement] = [
            (_INSERT_LAYER, (sid, layer, pin, at, None)),  # one the index never saw created
            (_DECIDE_LAYER, (sid, layer, state, at)),
        ]
        if state == LayerState.APPROVED.value and pin is not None:
            out.append((_FIRST_APPROVAL, (sid, pin, at, layer)))
        return out

    @staticmethod
    def refresh(session_id: str, at: float) -> Statement:
        """Recompute a session's summary row; ``at`` counts as activity."""
        return (_REFRESH, (session_id, at))

    # -- rebuilding from the documents ----------------------------------------------------

    async def needs_rebuild(self) -> bool:
        """Sessions exist but the index is empty (it is newer than they are)."""
        indexed = await self.db.fetchone("SELECT 1 FROM producer_sessions LIMIT 1")
        if indexed is not None:
            return False
        return await self.db.fetchone("SELECT 1 FROM sessions LIMIT 1") is not None

    async def rebuild(self, rooms: RoomManager) -> int:
        """Index every session from its document; return how many were indexed."""
        self.rebuilding = True
        count = 0
        started = time.monotonic()
        try:
            rows = await self.db.fetchall(
                "SELECT id, title, created_at, required_approvals FROM sessions ORDER BY created_at"
            )
            for row in rows:
                try:
                    room = await rooms.acquire(row["id"])
                    await self.db.write(*session_statements(room, row))
                    count += 1
                except Exception:
                    logger.exception("could not index session %s", row["id"])
        finally:
            self.rebuilding = False
        logger.info(
            "producer index rebuilt from %d documents in %.1f s", count, time.monotonic() - started
        )
        return count

    async def rebuild_in_background(self, rooms: RoomManager) -> None:
        """:meth:`rebuild` if needed (start-up stays fast either way)."""
        if await self.needs_rebuild():
            await self.rebuild(rooms)


def session_statements(room: Any, session: Any) -> list[Statement]:
    """Replace one session's index rows with what its document says now."""
    sid = session["id"]
    created = float(session["created_at"])
    required = int(session["required_approvals"] or 1)
    now = time.time()
    out: list[Statement] = [
        (f"DELETE FROM {table} WHERE session_id = ?", (sid,))
        for table in ("producer_pins", "producer_layers", "producer_jobs", "producer_revisions")
    ]
    out.append(
        (
            "INSERT INTO producer_sessions (id, title, created_at, last_activity)"
            " VALUES (?1, ?2, ?3, ?3) ON CONFLICT (id) DO UPDATE SET"
            " title = excluded.title, created_at = excluded.created_at",
            (sid, session["title"], created),
        )
    )
    activity = created
    layers: list[tuple[str, str | None, float, str, float | None, str]] = []
    for layer in room.layers:
        if not isinstance(layer, Map):
            continue
        data = layer.to_py() or {}
        layer_id = _text(data.get(schema.Layer.ID))
        if layer_id is None:
            continue
        made = _number(data.get(schema.Layer.CREATED_AT)) or created
        state = str(data.get(schema.Layer.STATE) or LayerState.PENDING.value)
        decided = [
            d for d in (data.get(schema.Layer.DECISIONS) or {}).values() if isinstance(d, dict)
        ]
        times = [t for d in decided if (t := _number(d.get("at"))) is not None]
        approvals = sorted(
            t
            for d in decided
            if d.get("decision") == Decision.APPROVE.value and (t := _number(d.get("at")))
        )
        approved_at = None
        if state == LayerState.APPROVED.value and approvals:
            approved_at = approvals[min(required, len(approvals)) - 1]
        fix = _text(data.get(schema.Layer.FIX)) or layer_id
        pin = _text(data.get(schema.Layer.PIN_ID))
        layers.append((layer_id, pin, made, state, approved_at, fix))
        activity = max(activity, made, *times)
    for layer_id, pin_id, made, state, approved_at, fix in layers:
        out.append(
            (
                "INSERT OR REPLACE INTO producer_layers"
                " (session_id, layer_id, pin_id, created_at, state, approved_at, fix)"
                " VALUES (?,?,?,?,?,?,?)",
                (sid, layer_id, pin_id, made, state, approved_at, fix),
            )
        )
    for pin_id, pin in room.pins.items():
        if not isinstance(pin, Map):
            continue
        pin_made = _number(pin.get(schema.Pin.CREATED_AT))
        pin_made = created if pin_made is None else min(now, max(created, pin_made))
        activity = max(activity, pin_made)
        own = sorted((lay for lay in layers if lay[1] == pin_id), key=lambda lay: lay[2])
        approved = [lay for lay in own if lay[4] is not None]
        first = min(approved, key=lambda lay: lay[4] or 0.0) if approved else None
        rounds = len({lay[5] for lay in own if lay[2] <= first[2]}) if first else None
        out.append(
            (
                "INSERT OR REPLACE INTO producer_pins"
                " (session_id, pin_id, created_at, status, first_approved_at, rounds)"
                " VALUES (?,?,?,?,?,?)",
                (
                    sid,
                    str(pin_id),
                    pin_made,
                    str(pin.get(schema.Pin.STATUS) or "open"),
                    first[4] if first else None,
                    rounds,
                ),
            )
        )
    for entry in getattr(room, "revisions", None) or ():
        if not isinstance(entry, Map) or entry.get(schema.Revision.ID) == schema.ORIGINAL_REVISION:
            continue
        out.append(
            (
                _INSERT_REVISION,
                (
                    sid,
                    str(entry.get(schema.Revision.ID)),
                    str(entry.get(schema.Revision.KIND) or "upscale"),
                    str(entry.get(schema.Revision.STATE) or LayerState.PENDING.value),
                    _number(entry.get(schema.Revision.CREATED_AT)),
                ),
            )
        )
    for job_id, job in room.jobs.items():
        status = job.get(schema.Job.STATUS) if isinstance(job, Map) else None
        if status in ("done", "failed", "cancelled"):
            out.append(
                (
                    "INSERT OR REPLACE INTO producer_jobs (session_id, job_id, status)"
                    " VALUES (?,?,?)",
                    (sid, str(job_id), status),
                )
            )
    out.append(ProducerIndex.refresh(sid, activity))
    return out
