"""The SQLite store and the blob store, on real files."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from proofroom.server.store import BlobStore, Database
from proofroom.server.store.db import WriteResult
from proofroom.server.store.doclog import DocLog
from proofroom.server.store.migrations import MIGRATIONS
from proofroom.shared.errors import NotFound

from .helpers import eventually


def committed(write: Callable[..., None], *args: Any) -> asyncio.Future[WriteResult]:
    """Call a callback-style write (``DocLog.append``, ``compact``); a future of its outcome."""
    future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()

    def done(outcome: WriteResult | BaseException) -> None:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    write(*args, done)
    return future


#: The writer runs on the event loop (NORMAL) or on its own thread (FULL syncs each commit).
MODES = pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])


async def test_migrations_run_once_and_wal_is_on(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Database(path):
        pass
    async with Database(path) as db:
        rows = await db.fetchall("SELECT version FROM schema_version")
        assert [r["version"] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"


async def test_an_older_database_keeps_its_document_log_through_the_migrations(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(MIGRATIONS[:4], start=1):
        old.executescript(
            f"BEGIN;\n{script}\nINSERT INTO schema_version VALUES ({number});\nCOMMIT;"
        )
    old.execute("INSERT INTO sessions VALUES ('s', 't', 1, 1, 'b', 0.0, 'admin', 1)")
    for i in range(5):
        old.execute(
            "INSERT INTO doc_updates (session_id, data, created_at) VALUES ('s', ?, 0)",
            (bytes([i]),),
        )
    old.close()
    async with Database(path) as db:
        log = DocLog(db)
        await committed(log.append, "s", [b"new"])
        snapshot, tail = await log.load("s")
        assert snapshot is None
        assert tail == [bytes([i]) for i in range(5)] + [b"new"]
        version = await db.fetchone("SELECT max(version) FROM schema_version")
        assert version is not None and version[0] == len(MIGRATIONS)


@MODES
async def test_concurrent_writes_group_into_few_commits(tmp_path: Path, synchronous: str) -> None:
    async with Database(tmp_path / "db.sqlite3", synchronous=synchronous) as db:
        assert db.threaded == (synchronous == "FULL")
        log = DocLog(db)
        db_rows = [f"s{i}" for i in range(3)]
        for sid in db_rows:
            await db.write(
                (
                    "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                    (sid, "t", 1, 1, "b", 0.0, "admin", 1),
                )
            )
        before = db.commits
        await asyncio.gather(
            *[committed(log.append, db_rows[i % 3], [bytes([i % 256]) * 10]) for i in range(300)]
        )
        assert db.commits - before < 300  # batched, not one commit each
        total = await db.fetchone("SELECT count(*) FROM doc_updates")
        assert total is not None and total[0] == 300


@MODES
async def test_a_failing_write_does_not_undo_its_neighbours(
    tmp_path: Path, synchronous: str
) -> None:
    async with Database(tmp_path / "db.sqlite3", synchronous=synchronous) as db:
        good = db.submit(("INSERT INTO audit (at, actor, action) VALUES (1, 'a', 'ok')", ()))
        bad = db.submit(("INSERT INTO no_such_table VALUES (1)", ()))
        also_good = db.submit(("INSERT INTO audit (at, actor, action) VALUES (2, 'b', 'ok')", ()))
        await good
        with pytest.raises(sqlite3.OperationalError):
            await bad
        await also_good
        rows = await db.fetchall("SELECT actor FROM audit ORDER BY at")
        assert [r["actor"] for r in rows] == ["a", "b"]


async def test_compaction_keeps_the_document(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite3") as db:
        await db.write(
            ("INSERT INTO sessions VALUES ('s',?,?,?,?,?,?,?)", ("t", 1, 1, "b", 0.0, "admin", 1))
        )
        log = DocLog(db)
        doc: Doc = Doc()
        pins = doc.get("pins", type=Map)
        updates: list[bytes] = []
        doc.observe(lambda e: updates.append(e.update))
        for i in range(10):
            pins[f"p{i}"] = i
        await committed(log.append, "s", updates[:6])
        snapshot = doc.get_update()
        compaction = committed(log.compact, "s", snapshot, 6)
        await committed(log.append, "s", updates[6:])  # queued after the compaction
        await compaction
        snap, tail = await log.load("s")
        assert snap == snapshot and tail == updates[6:]
        rebuilt: Doc = Doc()
        for update in [snap, *tail]:
            rebuilt.apply_update(update)
        assert rebuilt.get("pins", type=Map).to_py() == pins.to_py()


@MODES
async def test_callbacks_run_in_submission_order_with_their_outcome(
    tmp_path: Path, synchronous: str
) -> None:
    async with Database(tmp_path / "db.sqlite3", synchronous=synchronous) as db:
        seen: list[tuple[int, str]] = []

        def note(i: int) -> Callable[[WriteResult | BaseException], None]:
            return lambda outcome: seen.append((i, type(outcome).__name__))

        for i in range(50):
            sql = (
                "INSERT INTO no_such_table VALUES (1)"
                if i % 7 == 3
                else ("INSERT INTO audit (at, actor, action) VALUES (?, 'a', 'ok')")
            )
            db.submit_callback([(sql, (i,) if "audit" in sql else ())], note(i))
        await db.submit()  # a barrier: everything before it has been delivered
        assert [i for i, _ in seen] == list(range(50))
        assert {kind for i, kind in seen if i % 7 == 3} == {"OperationalError"}
        assert {kind for i, kind in seen if i % 7 != 3} == {"WriteResult"}
        rows = await db.fetchone("SELECT count(*) FROM audit")
        assert rows is not None and rows[0] == 50 - len([i for i in range(50) if i % 7 == 3])


async def test_checkpoints_move_the_wal_into_the_database_file(tmp_path: Path) -> None:
    # The loop's writer never checkpoints (that is where the fsyncs are); the checkpoint
    # thread does, so committed pages reach the main file without a commit waiting on it.
    path = tmp_path / "db.sqlite3"
    async with Database(path, checkpoint_seconds=0.05) as db:
        start = path.stat().st_size
        payload = b"x" * 4096
        for i in range(64):
            await db.write(
                (
                    "INSERT INTO audit (at, actor, action, detail) VALUES (?, 'a', 'big', ?)",
                    (i, payload.hex()),
                )
            )
        await eventually(lambda: path.stat().st_size > start + 64 * 4096)


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite3") as db:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        db.submit(("INSERT INTO audit (at, actor, action) VALUES (1, 'a', 'ok')", ()))


async def test_blob_store_is_content_addressed_and_atomic(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blob_id = await blobs.put(b"hello")
    assert blob_id == hashlib.sha256(b"hello").hexdigest()
    assert await blobs.put(b"hello") == blob_id
    assert await blobs.get(blob_id) == b"hello"
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))
    with pytest.raises(NotFound):
        await blobs.get("0" * 64)
    with pytest.raises(NotFound):
        await blobs.get("../../etc/passwd")
