"""The SQLite database: one writer connection fed by one write path, one reader connection.

Every write goes through :meth:`Database.write`: operations queue up and a single writer
task commits whatever is waiting in one transaction (group commit). Each operation runs
under its own savepoint, so one failing operation does not undo its neighbours. A caller's
``await`` returns only after the commit, which is what "durable before visible" relies on.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable, Sequence
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
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def __aenter__(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._migrate(self._writer)
        self._reader = await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._write_loop())
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
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self._synchronous}")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = list(await conn.execute_fetchall("SELECT max(version) FROM schema_version"))
        current = rows[0][0] or 0
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            logger.info("applying migration %d", number)
            await conn.executescript(
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
        assert self._writer is not None
        conn = self._writer
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
                await self._commit_batch(conn, batch)
            if stopping:
                return

    async def _commit_batch(self, conn: aiosqlite.Connection, batch: list[_Op]) -> None:
        results: list[tuple[_Op, WriteResult | BaseException]] = []
        try:
            await conn.execute("BEGIN")
            for op in batch:
                results.append((op, await self._run_op(conn, op)))
            await conn.commit()
            self.commits += 1
        except (sqlite3.Error, OSError) as exc:
            logger.exception("commit of %d write operations failed", len(batch))
            if conn.in_transaction:
                await conn.rollback()
            results = [(op, exc) for op in batch]
        for op, outcome in results:
            if op.future.done():
                continue
            if isinstance(outcome, BaseException):
                op.future.set_exception(outcome)
            else:
                op.future.set_result(outcome)

    @staticmethod
    async def _run_op(conn: aiosqlite.Connection, op: _Op) -> WriteResult | BaseException:
        await conn.execute("SAVEPOINT op")
        try:
            result = WriteResult(0, [])
            for sql, params in op.statements:
                cursor = await conn.execute(sql, params)
                rows = list(await cursor.fetchall()) if " RETURNING " in sql.upper() else []
                result = WriteResult(cursor.lastrowid or 0, rows)
        except sqlite3.Error as exc:
            await conn.execute("ROLLBACK TO op")
            await conn.execute("RELEASE op")
            return exc
        await conn.execute("RELEASE op")
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
