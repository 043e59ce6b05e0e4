"""Queries for sessions, invites and the audit log."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from ...shared.enums import Role
from .db import Database


@dataclass(frozen=True)
class SessionRecord:
    """One review session's row."""

    id: str
    title: str
    width: int
    height: int
    base_blob: str
    created_at: float
    created_by: str
    required_approvals: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SessionRecord:
        return cls(**{k: row[k] for k in row.keys()})


@dataclass(frozen=True)
class InviteRecord:
    """One invite (share link) row; the token itself is never stored."""

    id: str
    session_id: str
    role: Role
    name: str
    token_hash: str
    created_at: float
    created_by: str
    expires_at: float | None
    revoked_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> InviteRecord:
        values = {k: row[k] for k in row.keys()}
        values["role"] = Role(values["role"])
        return cls(**values)

    def is_active(self, now: float | None = None) -> bool:
        """Neither revoked nor expired."""
        now = time.time() if now is None else now
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, Any]:
        """JSON for owners listing invites (no token, no hash)."""
        return {
            "id": self.id,
            "role": self.role.value,
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


def audit_statement(
    session_id: str | None, actor: str, action: str, target: str | None, detail: dict[str, Any]
) -> tuple[str, tuple[Any, ...]]:
    """An INSERT into the audit log, to run in the same write as the change it records."""
    return (
        "INSERT INTO audit (session_id, at, actor, action, target, detail) VALUES (?,?,?,?,?,?)",
        (session_id, time.time(), actor, action, target, json.dumps(detail, sort_keys=True)),
    )


class Records:
    """Sessions, invites and audit, over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_session(
        self,
        session: SessionRecord,
        invites: list[InviteRecord],
        initial_update: bytes,
    ) -> None:
        """Insert a session, its share-link invites and its first document state atomically."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO sessions (id, title, width, height, base_blob, created_at,"
                " created_by, required_approvals) VALUES (?,?,?,?,?,?,?,?)",
                (
                    session.id,
                    session.title,
                    session.width,
                    session.height,
                    session.base_blob,
                    session.created_at,
                    session.created_by,
                    session.required_approvals,
                ),
            ),
            (
                "INSERT INTO doc_snapshots (session_id, data, updated_at) VALUES (?,?,?)",
                (session.id, initial_update, session.created_at),
            ),
        ]
        statements += [_insert_invite(invite) for invite in invites]
        statements.append(
            audit_statement(
                session.id,
                session.created_by,
                "session.create",
                session.id,
                {"title": session.title},
            )
        )
        await self.db.write(*statements)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self.db.fetchone("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return SessionRecord.from_row(row) if row else None

    async def list_sessions(self) -> list[SessionRecord]:
        rows = await self.db.fetchall("SELECT * FROM sessions ORDER BY created_at DESC")
        return [SessionRecord.from_row(r) for r in rows]

    async def add_invite(self, invite: InviteRecord) -> None:
        await self.db.write(
            _insert_invite(invite),
            audit_statement(
                invite.session_id,
                invite.created_by,
                "invite.create",
                invite.id,
                {"role": invite.role.value, "name": invite.name, "expires_at": invite.expires_at},
            ),
        )

    async def invite_by_token_hash(self, token_hash: str) -> InviteRecord | None:
        row = await self.db.fetchone("SELECT * FROM invites WHERE token_hash = ?", (token_hash,))
        return InviteRecord.from_row(row) if row else None

    async def get_invite(self, session_id: str, invite_id: str) -> InviteRecord | None:
        row = await self.db.fetchone(
            "SELECT * FROM invites WHERE id = ? AND session_id = ?", (invite_id, session_id)
        )
        return InviteRecord.from_row(row) if row else None

    async def list_invites(self, session_id: str) -> list[InviteRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM invites WHERE session_id = ? ORDER BY created_at", (session_id,)
        )
        return [InviteRecord.from_row(r) for r in rows]

    async def revoke_invite(self, invite: InviteRecord, actor: str) -> None:
        await self.db.write(
            (
                "UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (time.time(), invite.id),
            ),
            audit_statement(invite.session_id, actor, "invite.revoke", invite.id, {}),
        )

    async def audit(
        self,
        session_id: str | None,
        actor: str,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.db.write(audit_statement(session_id, actor, action, target, detail or {}))

    async def audit_events(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT at, actor, action, target, detail FROM audit WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
        return [
            {
                "at": r["at"],
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]


def _insert_invite(invite: InviteRecord) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO invites (id, session_id, role, name, token_hash, created_at, created_by,"
        " expires_at, revoked_at) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            invite.id,
            invite.session_id,
            invite.role.value,
            invite.name,
            invite.token_hash,
            invite.created_at,
            invite.created_by,
            invite.expires_at,
            invite.revoked_at,
        ),
    )
