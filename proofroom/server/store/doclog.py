"""The durable document log of each session: a snapshot plus the updates since."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .db import Database, Statement, WriteCallback


class DocLog:
    """Append-only CRDT updates per session, compacted into a snapshot now and then."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, session_id: str) -> tuple[bytes | None, list[bytes]]:
        """The snapshot (if any) and the updates appended after it, oldest first."""
        snap = await self.db.fetchone(
            "SELECT data FROM doc_snapshots WHERE session_id = ?", (session_id,)
        )
        rows = await self.db.fetchall(
            "SELECT data FROM doc_updates WHERE session_id = ? ORDER BY id", (session_id,)
        )
        return (bytes(snap["data"]) if snap else None), [bytes(r["data"]) for r in rows]

    async def client_owners(self, session_id: str) -> dict[int, str]:
        """Who owns each Yjs client id of the session's document (user ids; '' the server)."""
        rows = await self.db.fetchall(
            "SELECT client_id, user_id FROM doc_clients WHERE session_id = ?", (session_id,)
        )
        return {int(r["client_id"]): str(r["user_id"]) for r in rows}

    @staticmethod
    def claim_statements(session_id: str, claims: Sequence[tuple[int, str]]) -> list[Statement]:
        """SQL recording new client id owners; commit it with the update that made them."""
        return [
            (
                "INSERT OR IGNORE INTO doc_clients (session_id, client_id, user_id) VALUES (?,?,?)",
                (session_id, client_id, user_id),
            )
            for client_id, user_id in claims
        ]

    def append(
        self,
        session_id: str,
        updates: Sequence[bytes],
        done: WriteCallback,
        statements: Sequence[Statement] = (),
    ) -> None:
        """Queue updates for the log; ``done`` runs on the loop once they are committed.

        ``statements`` (an audit row, say) commit in the same operation: all or nothing.
        """
        now = time.time()
        self.db.submit_callback(
            [
                *(
                    (
                        "INSERT INTO doc_updates (session_id, data, created_at) VALUES (?,?,?)",
                        (session_id, update, now),
                    )
                    for update in updates
                ),
                *statements,
            ],
            done,
        )

    def compact(self, session_id: str, snapshot: bytes, merged: int, done: WriteCallback) -> None:
        """Replace the snapshot, and drop the ``merged`` oldest updates it now contains.

        The caller merged the previous snapshot with exactly the session's ``merged`` oldest
        logged updates (ids grow within a session, and only compaction deletes them), so
        updates logged while it merged stay in the tail, after the new snapshot. Both
        statements commit together or not at all. ``done`` runs once it committed (or failed).
        """
        self.db.submit_callback(
            [
                (
                    "INSERT INTO doc_snapshots (session_id, data, updated_at) VALUES (?,?,?)"
                    " ON CONFLICT(session_id) DO UPDATE SET data = excluded.data,"
                    " updated_at = excluded.updated_at",
                    (session_id, snapshot, time.time()),
                ),
                (
                    "DELETE FROM doc_updates WHERE id IN (SELECT id FROM doc_updates"
                    " WHERE session_id = ? ORDER BY id LIMIT ?)",
                    (session_id, merged),
                ),
            ],
            done,
        )
