"""The SQLite database: one writer thread fed by one write path, one aiosqlite reader.

Every write goes through :meth:`Database.write`: operations queue up, and a single writer
commits whatever is waiting in one transaction (group commit). Each operation runs under
its own savepoint, so one failing operation does not undo its neighbours. A caller's
``await`` returns only after the commit, which is what "durable before visible" relies on.

The writer is a plain ``sqlite3`` connection owned by one dedicated thread, and a whole
batch (BEGIN, every savepoint and statement, COMMIT) runs there in a single hand-off. Driving
the same work statement by statement through aiosqlite cost four to six thread round trips
per update, which under load (a thousand updates a second) became the server's bottleneck.
Reads stay on aiosqlite (WAL lets them run beside the writer and see only committed data).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Sequence
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


@dataclass
class _Op:
    statements: list[Statement]
    future: asyncio.Future[WriteResult] = field(repr=False)


class Database:
    """Owns the SQLite file; use as ``async with Database(path) as db``."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def __aenter__(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._thread, self._open_writer)
        self._reader = await aiosqlite.connect(self.path)
        self._reader.row_factory = sqlite3.Row
        for pragma in self._pragmas():
            await self._reader.execute(pragma)
        self._task = loop.create_task(self._write_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            await self._queue.put(None)
            await self._task
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._writer.close)
        self._thread.shutdown(wait=True)

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
        self._migrate(conn)
        return conn

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
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Op(list(statements), future))
        return future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            op = await self._queue.get()
            batch: list[_Op] = []
            stopping = op is None
            if op is not None:
                batch.append(op)
            while not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                else:
                    batch.append(nxt)
            if batch:
                statements = [op.statements for op in batch]
                outcomes = await loop.run_in_executor(self._thread, self._commit, statements)
                for op, outcome in zip(batch, outcomes, strict=True):
                    if op.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        op.future.set_exception(outcome)
                    else:
                        op.future.set_result(outcome)
            if stopping:
                return

    def _commit(self, batch: list[list[Statement]]) -> list[WriteResult | BaseException]:
        """One transaction for the whole batch, on the writer thread."""
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
        conn.execute("SAVEPOINT op")
        try:
            result = WriteResult(0, [])
            for sql, params in statements:
                cursor = conn.execute(sql, params)
                rows = cursor.fetchall() if " RETURNING " in sql.upper() else []
                result = WriteResult(cursor.lastrowid or 0, rows)
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            return exc
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
