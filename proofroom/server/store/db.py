"""The SQLite database: one write path with group commit, one aiosqlite reader.

Every write goes through :meth:`Database.submit`: operations queue up, and the writer
commits whatever is waiting in one transaction (group commit). One failing operation does
not undo its neighbours: a single statement undoes only itself, and an operation of several
statements runs under its own savepoint. A caller's
``await`` (or callback) completes only after the commit, which is what "durable before
visible" relies on.

Where the writer runs depends on what a commit costs. With ``synchronous=NORMAL`` (the
default; WAL, survives a killed process) a commit is a write into the page cache with no
fsync: a batch of small inserts takes tens of microseconds, so it runs on the event loop,
one batch per loop turn. A writer thread was measured to be far slower here: each of its
statements must take the GIL back from a busy event loop, which under a thousand updates a
second added milliseconds per batch (sync benchmark p99 54 -> 19 ms without it). The fsyncs
of WAL checkpoints run on a separate thread, and the connection does none itself. With
``synchronous=FULL`` (or ``EXTRA``) every commit syncs to disk, so batches go to a
dedicated writer thread instead. Either way the callbacks of :meth:`submit_callback` run
in the same turn as the commit's result arrives, so a live document sends its updates
without another trip through the loop. Reads stay on aiosqlite (WAL lets them run beside
the writer and see only committed data).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from .migrations import MIGRATIONS

logger = logging.getLogger(__name__)

Statement = tuple[str, Sequence[Any]]


@dataclass(frozen=True)
class WriteResult:
    """What the last statement of a write produced."""

    lastrowid: int
    #: Rows of the last statement (``RETURNING`` clauses); empty otherwise.
    rows: list[sqlite3.Row]


#: Called on the event loop with what one operation produced, or the error it failed with.
WriteCallback = Callable[[WriteResult | BaseException], None]


@dataclass
class _Op:
    statements: list[Statement]
    future: asyncio.Future[WriteResult] | None = field(repr=False)
    callback: WriteCallback | None = field(default=None, repr=False)


class Database:
    """Owns the SQLite file; use as ``async with Database(path) as db``."""

    def __init__(
        self, path: Path, *, synchronous: str = "NORMAL", checkpoint_seconds: float = 1.0
    ) -> None:
        self.path = path
        self._synchronous = synchronous.upper()
        #: Commits sync to disk: they run on the writer thread, not on the loop.
        self.threaded = self._synchronous in ("FULL", "EXTRA")
        self._checkpoint_seconds = checkpoint_seconds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ckpt")
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Operations waiting for the writer; ``_scheduled`` is true while a drain is due.
        self._lock = threading.Lock()
        self._pending: list[_Op] = []
        self._scheduled = False
        self._closed = False
        self._checkpoint_task: asyncio.Task[None] | None = None
        self.commits = 0

    async def __aenter__(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._thread, self._open_writer)
        self._reader = await aiosqlite.connect(self.path)
        self._reader.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            await self._reader.execute(pragma)
        if not self.threaded:
            self._checkpoint_task = loop.create_task(self._checkpoint_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None and not self._closed:
            await self.submit()  # everything queued before it has committed
        self._closed = True
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoint_task
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._writer.close)
        self._thread.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)

    def _pragmas(self) -> list[str]:
        return [
            "PRAGMA journal_mode=WAL",
            f"PRAGMA synchronous={self._synchronous}",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=5000",
        ]

    def _open_writer(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are ours (BEGIN/SAVEPOINT/COMMIT), explicitly.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            conn.execute(pragma)
        if not self.threaded:
            # Checkpoints (the fsyncs) belong to the checkpoint thread, not to the loop.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        self._migrate(conn)
        return conn

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(self._checkpointer, self._open_checkpointer)
        try:
            done = self.commits
            while True:
                await asyncio.sleep(self._checkpoint_seconds)
                if self.commits == done:
                    continue
                done = self.commits
                try:
                    await loop.run_in_executor(self._checkpointer, self._checkpoint, conn)
                except sqlite3.Error as exc:
                    logger.warning("WAL checkpoint failed (retried later): %r", exc)
        finally:
            await asyncio.shield(loop.run_in_executor(self._checkpointer, conn.close))

    def _open_checkpointer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection) -> None:
        # PASSIVE never waits for the writer; the next commit after a complete checkpoint
        # starts the WAL over, so it stays small.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            logger.info("applying migration %d", number)
            conn.executescript(
                f"BEGIN;\n{script}\nINSERT INTO schema_version VALUES ({number});\nCOMMIT;"
            )

    # -- writes ---------------------------------------------------------------------------

    async def write(self, *statements: Statement) -> WriteResult:
        """Run statements atomically; return the last one's result after the commit."""
        return await self.submit(*statements)

    def submit(self, *statements: Statement) -> asyncio.Future[WriteResult]:
        """Queue statements now (keeping their order against later writes); await to commit."""
        assert self._loop is not None, "use the database as `async with Database(...)`"
        future: asyncio.Future[WriteResult] = self._loop.create_future()
        self._enqueue(_Op(list(statements), future))
        return future

    def submit_callback(self, statements: Sequence[Statement], callback: WriteCallback) -> None:
        """Like :meth:`submit`, but ``callback`` runs on the loop as soon as the batch is back.

        For callers on a hot path: no future, and no further trip through the event loop
        between the commit and the callback.
        """
        self._enqueue(_Op(list(statements), None, callback))

    def _enqueue(self, op: _Op) -> None:
        if self._closed:
            raise RuntimeError("the database is closed")
        with self._lock:
            self._pending.append(op)
            if self._scheduled:
                return  # the next drain picks it up with the rest
            self._scheduled = True
        if self.threaded:
            self._thread.submit(self._drain)
        else:
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """On the loop: commit what this loop turn queued, then tell its callers."""
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        self._deliver(batch, self._commit_batch(batch))

    def _drain(self) -> None:
        """On the writer thread: commit batches until nothing is waiting."""
        loop = self._loop
        assert loop is not None
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._scheduled = False
                    return
            outcomes = self._commit_batch(batch)
            try:
                loop.call_soon_threadsafe(self._deliver, batch, outcomes)
            except RuntimeError:  # the loop is gone (interpreter shutdown)
                logger.warning("dropping the results of %d writes: no event loop", len(batch))

    def _commit_batch(self, batch: list[_Op]) -> list[WriteResult | BaseException]:
        try:
            return self._commit([op.statements for op in batch])
        except Exception as exc:  # never leave the queue stuck behind a broken writer
            logger.exception("the writer failed on a batch of %d writes", len(batch))
            return [exc] * len(batch)

    @staticmethod
    def _deliver(batch: list[_Op], outcomes: list[WriteResult | BaseException]) -> None:
        for op, outcome in zip(batch, outcomes, strict=True):
            if op.callback is not None:
                try:
                    op.callback(outcome)
                except Exception:
                    logger.exception("a write callback failed")
            future = op.future
            if future is None or future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _commit(self, batch: list[list[Statement]]) -> list[WriteResult | BaseException]:
        """One transaction for the whole batch (on the loop, or on the writer thread)."""
        conn = self._writer
        assert conn is not None
        try:
            conn.execute("BEGIN")
            outcomes: list[WriteResult | BaseException] = [
                self._run_op(conn, statements) for statements in batch
            ]
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            logger.exception("commit of %d write operations failed", len(batch))
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [exc] * len(batch)
        self.commits += 1
        return outcomes

    @staticmethod
    def _run_op(conn: sqlite3.Connection, statements: list[Statement]) -> WriteResult | Exception:
        # A single statement is atomic on its own (a failing one undoes only itself), so
        # only operations of several statements pay for a savepoint.
        single = len(statements) == 1
        if not single:
            conn.execute("SAVEPOINT op")
        try:
            result = WriteResult(0, [])
            for sql, params in statements:
                cursor = conn.execute(sql, params)
                rows = cursor.fetchall() if " RETURNING " in sql.upper() else []
                result = WriteResult(cursor.lastrowid or 0, rows)
        except sqlite3.Error as exc:
            if not conn.in_transaction:
                # Some errors (disk full, I/O) roll the whole transaction back: what
                # follows must not run outside it, so the batch fails as one.
                raise
            if not single:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            return exc
        if not single:
            conn.execute("RELEASE op")
        return result

    # -- reads ----------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query (sees only committed data)."""
        assert self._reader is not None
        rows: Iterable[sqlite3.Row] = await self._reader.execute_fetchall(sql, params)
        return list(rows)

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """The first row of a read-only query, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None
