"""Webhooks: review events POSTed to configured endpoints, signed, durable, retried.

Each (event, endpoint) pair becomes a row of the ``webhook_deliveries`` outbox, written on
the database's single write path by a listener that never waits. A dispatcher task sends
due rows, at most one in flight per endpoint (a hanging endpoint holds up only itself)
and a bounded number overall, each under a deadline. Connection errors, timeouts, 5xx and
429 are retried with exponential backoff and jitter; other answers are final. Rows survive
restarts, so delivery is at least once: receivers deduplicate on ``X-Proofroom-Delivery``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

from ... import __version__
from ..settings import Settings
from ..store.db import Database
from . import events

logger = logging.getLogger(__name__)

DEFAULT_EVENTS = (
    events.LAYER_CREATED,
    events.LAYER_DECISION,
    events.REVISION_CREATED,
    events.REVISION_DECISION,
    events.JOB_DONE,
    events.JOB_FAILED,
    events.JOB_CANCELLED,
)
#: Delivered and failed rows are kept this long for inspection.
RETENTION_SECONDS = 7 * 24 * 3600


def sign(secret: str, body: bytes) -> str:
    """The ``X-Proofroom-Signature`` value: ``sha256=`` and the hex HMAC of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _split(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how to deliver; bad values fail at start, not at the first event."""

    urls: tuple[str, ...] = ()
    secret: str | None = None
    events: tuple[str, ...] = DEFAULT_EVENTS
    #: Deadline for one attempt (connect, send, answer), in seconds.
    timeout: float = 10.0
    max_attempts: int = 10
    #: First retry delay; it doubles per attempt up to ``backoff_max``.
    backoff: float = 1.0
    backoff_max: float = 300.0
    #: Deliveries in flight at once (and never more than one per endpoint).
    concurrency: int = 8

    def __post_init__(self) -> None:
        for url in self.urls:
            parsed = httpx.URL(url)
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError(f"webhook URL {url!r} must be an absolute http(s) URL")
        if self.timeout <= 0 or self.backoff <= 0 or self.backoff_max < self.backoff:
            raise ValueError("webhook timeout and backoff must be positive (backoff <= max)")
        if self.max_attempts < 1 or self.concurrency < 1:
            raise ValueError("webhook max attempts and concurrency must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookConfig:
        return cls(
            urls=_split(settings.webhook_urls or ""),
            secret=settings.webhook_secret or None,
            events=_split(settings.webhook_events or ""),
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            backoff=settings.webhook_backoff_seconds,
            backoff_max=settings.webhook_backoff_max_seconds,
            concurrency=settings.webhook_concurrency,
        )


def backoff_delay(config: WebhookConfig, attempts: int, retry_after: float | None = None) -> float:
    """Delay before the next try after ``attempts`` failed ones ("equal jitter")."""
    ceiling = min(config.backoff_max, config.backoff * 2.0 ** (attempts - 1))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, config.backoff_max))
    return delay


@dataclass(frozen=True)
class _Outcome:
    delivered: bool
    retry: bool
    status: int | None
    error: str | None
    retry_after: float | None = None


class Webhooks:
    """The outbox listener (:meth:`on_event`) and the dispatcher (:meth:`run`)."""

    def __init__(
        self,
        db: Database,
        config: WebhookConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self._transport = transport
        self._wake = asyncio.Event()
        self._busy: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.config.urls)

    # -- the outbox -----------------------------------------------------------------------

    def on_event(self, event: events.Event) -> None:
        """Queue one delivery per endpoint (never waits); the dispatcher wakes on commit."""
        if not self.config.urls or event.type not in self.config.events:
            return
        body = json.dumps(event.to_json(), separators=(",", ":"), sort_keys=True).encode()
        now = time.time()
        future = self.db.submit(
            *(
                (
                    "INSERT INTO webhook_deliveries (id, url, event_type, session_id, body,"
                    " created_at, next_attempt_at) VALUES (?,?,?,?,?,?,?)",
                    (str(uuid.uuid4()), url, event.type, event.session_id, body, now, now),
                )
                for url in self.config.urls
            )
        )
        future.add_done_callback(self._queued)

    def _queued(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.error("could not queue webhook deliveries: %r", future.exception())
        self._wake.set()

    async def deliveries(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The latest deliveries (newest first), for inspection."""
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        rows = await self.db.fetchall(
            "SELECT id, url, event_type, session_id, status, attempts, created_at,"
            " next_attempt_at, last_attempt_at, last_status, last_error, finished_at"
            f" FROM webhook_deliveries {where} ORDER BY seq DESC LIMIT ?",
            [*args, limit],
        )
        return [{k: r[k] for k in r.keys()} for r in rows]

    # -- the dispatcher -------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until cancelled; rows left pending resume at the next start."""
        if not self.config.urls:
            return
        if not self.config.secret:
            logger.warning("webhooks are sent unsigned: set PROOFROOM_WEBHOOK_SECRET")
        await self.db.write(
            (
                "DELETE FROM webhook_deliveries WHERE status != 'pending' AND finished_at < ?",
                (time.time() - RETENTION_SECONDS,),
            )
        )
        timeout = httpx.Timeout(self.config.timeout)
        async with (
            httpx.AsyncClient(
                timeout=timeout, follow_redirects=False, transport=self._transport
            ) as http,
            anyio.create_task_group() as tg,
        ):
            while True:
                self._wake.clear()
                rows, next_at = await self._due()
                for row in rows:
                    self._busy.add(row["url"])
                    tg.start_soon(self._deliver, http, row)
                wait = None if next_at is None else max(0.0, next_at - time.time())
                with anyio.move_on_after(wait):
                    await self._wake.wait()

    async def _due(self) -> tuple[list[sqlite3.Row], float | None]:
        """Rows to start now (oldest per idle endpoint) and when the next one is due."""
        idle = [u for u in self.config.urls if u not in self._busy]
        room = self.config.concurrency - len(self._busy)
        if not idle or room <= 0:
            return [], None
        marks = ",".join("?" * len(idle))
        heads = await self.db.fetchall(
            "SELECT d.* FROM webhook_deliveries d JOIN ("
            "  SELECT url, min(next_attempt_at) AS at FROM webhook_deliveries"
            f"  WHERE status = 'pending' AND url IN ({marks}) GROUP BY url"
            ") h ON d.url = h.url AND d.next_attempt_at = h.at AND d.status = 'pending'"
            " ORDER BY d.next_attempt_at, d.seq",
            idle,
        )
        now = time.time()
        start: list[sqlite3.Row] = []
        later: list[float] = []
        seen: set[str] = set()
        for row in heads:
            if row["url"] in seen:
                continue
            seen.add(row["url"])
            if row["next_attempt_at"] <= now and len(start) < room:
                start.append(row)
            else:
                later.append(row["next_attempt_at"])
        return start, min(later) if later else None

    async def _deliver(self, http: httpx.AsyncClient, row: sqlite3.Row) -> None:
        try:
            outcome = await self._attempt(http, row)
            await self.db.write(self._record(row, outcome))
        finally:
            self._busy.discard(row["url"])
            self._wake.set()

    async def _attempt(self, http: httpx.AsyncClient, row: sqlite3.Row) -> _Outcome:
        body: bytes = row["body"]
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"Proofroom-Webhooks/{__version__}",
            "X-Proofroom-Event": row["event_type"],
            "X-Proofroom-Delivery": row["id"],
            "X-Proofroom-Timestamp": str(int(time.time())),
        }
        if self.config.secret:
            headers["X-Proofroom-Signature"] = sign(self.config.secret, body)
        try:
            # One deadline for the whole attempt: httpx's timeouts are per phase, and a
            # server that drips its answer byte by byte would never trip them.
            with anyio.fail_after(self.config.timeout):
                async with http.stream("POST", row["url"], content=body, headers=headers) as r:
                    status = r.status_code
                    retry_after = _retry_after(r.headers)
        except TimeoutError:
            return _Outcome(False, True, None, f"no answer within {self.config.timeout} s")
        except httpx.HTTPError as exc:
            return _Outcome(False, True, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= status < 300:
            return _Outcome(True, False, status, None)
        retry = status == 429 or status >= 500
        return _Outcome(False, retry, status, f"HTTP {status}", retry_after)

    def _record(self, row: sqlite3.Row, outcome: _Outcome) -> tuple[str, tuple[Any, ...]]:
        now = time.time()
        attempts = row["attempts"] + 1
        if outcome.delivered or not outcome.retry or attempts >= self.config.max_attempts:
            status = "delivered" if outcome.delivered else "failed"
            if status == "failed":
                logger.warning(
                    "webhook %s to %s failed for good after %d attempts: %s",
                    row["id"],
                    row["url"],
                    attempts,
                    outcome.error,
                )
            return (
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_attempt_at = ?,"
                " last_status = ?, last_error = ?, finished_at = ? WHERE id = ?",
                (status, attempts, now, outcome.status, outcome.error, now, row["id"]),
            )
        delay = backoff_delay(self.config, attempts, outcome.retry_after)
        logger.info(
            "webhook %s to %s: %s; retry %d in %.1f s",
            row["id"],
            row["url"],
            outcome.error,
            attempts + 1,
            delay,
        )
        return (
            "UPDATE webhook_deliveries SET attempts = ?, last_attempt_at = ?, last_status = ?,"
            " last_error = ?, next_attempt_at = ? WHERE id = ?",
            (attempts, now, outcome.status, outcome.error, now + delay, row["id"]),
        )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides
