"""Queries for sessions, invites, participants and the audit log."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ...shared.enums import Role
from .db import Database


class InviteKind(StrEnum):
    """What an invite's token is: a door anyone may walk through, or one person."""

    #: A role link: whoever opens it joins under their own name and gets a personal token.
    LINK = "link"
    #: A named invite: its token is one person's identity directly.
    PERSONAL = "personal"


class Actor(Protocol):
    """Who did something, as the audit log records it (an Identity fits)."""

    @property
    def user_id(self) -> str: ...
    @property
    def name(self) -> str: ...


def invite_user_id(invite_id: str) -> str:
    """The participant id behind an invite's own token."""
    return f"u_{invite_id}"


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
    kind: InviteKind = InviteKind.PERSONAL

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> InviteRecord:
        values = {k: row[k] for k in cls.__dataclass_fields__}
        values["role"] = Role(values["role"])
        values["kind"] = InviteKind(values["kind"])
        return cls(**values)

    @property
    def user_id(self) -> str:
        """The participant id of a personal invite's holder (and of a link used as a person
        before links became doors: documents of that time carry it)."""
        return invite_user_id(self.id)

    @property
    def is_link(self) -> bool:
        return self.kind is InviteKind.LINK

    def is_active(self, now: float | None = None) -> bool:
        """Neither revoked nor expired."""
        now = time.time() if now is None else now
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def public(self) -> dict[str, Any]:
        """JSON for owners listing invites (no token, no hash)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "role": self.role.value,
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


@dataclass(frozen=True)
class ParticipantRecord:
    """A person who joined through a role link; the link's role, expiry and revocation bind
    them. The token itself is never stored."""

    id: str
    session_id: str
    invite_id: str
    name: str
    email: str | None
    token_hash: str
    created_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ParticipantRecord:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def audit_statement(
    session_id: str | None,
    actor: Actor | str,
    action: str,
    target: str | None,
    detail: dict[str, Any],
) -> tuple[str, tuple[Any, ...]]:
    """An INSERT into the audit log, to run in the same write as the change it records.

    ``actor`` is the identity (its id and name are both recorded: an id alone says nothing
    to a reader of the log once a link has many people behind it), or a bare id for the
    server's own actions.
    """
    user_id, name = (actor, None) if isinstance(actor, str) else (actor.user_id, actor.name)
    return (
        "INSERT INTO audit (session_id, at, actor, actor_name, action, target, detail)"
        " VALUES (?,?,?,?,?,?,?)",
        (
            session_id,
            time.time(),
            user_id,
            name,
            action,
            target,
            json.dumps(detail, sort_keys=True),
        ),
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

    async def add_invite(self, invite: InviteRecord, actor: Actor | str | None = None) -> None:
        await self.db.write(
            _insert_invite(invite),
            audit_statement(
                invite.session_id,
                invite.created_by if actor is None else actor,
                "invite.create",
                invite.id,
                {
                    "kind": invite.kind.value,
                    "role": invite.role.value,
                    "name": invite.name,
                    "expires_at": invite.expires_at,
                },
            ),
        )

    async def invite_by_token_hash(self, token_hash: str) -> InviteRecord | None:
        row = await self.db.fetchone("SELECT * FROM invites WHERE token_hash = ?", (token_hash,))
        return InviteRecord.from_row(row) if row else None

    async def add_participant(self, person: ParticipantRecord) -> None:
        """Record a person who joined through a link, with the audit row of the join."""
        await self.db.write(
            (
                "INSERT INTO participants (id, session_id, invite_id, name, email, token_hash,"
                " created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    person.id,
                    person.session_id,
                    person.invite_id,
                    person.name,
                    person.email,
                    person.token_hash,
                    person.created_at,
                ),
            ),
            audit_statement(
                person.session_id,
                _Named(person.id, person.name),
                "participant.join",
                person.invite_id,
                {},
            ),
        )

    async def participant_by_token_hash(
        self, token_hash: str
    ) -> tuple[ParticipantRecord, InviteRecord] | None:
        """A joined person and the link they joined through (one query: every request of
        a joined person resolves its token here)."""
        row = await self.db.fetchone(
            "SELECT p.id AS p_id, p.name AS p_name, p.email AS p_email,"
            " p.token_hash AS p_token_hash, p.created_at AS p_created_at, i.*"
            " FROM participants p JOIN invites i ON i.id = p.invite_id WHERE p.token_hash = ?",
            (token_hash,),
        )
        if row is None:
            return None
        invite = InviteRecord.from_row(row)
        person = ParticipantRecord(
            id=row["p_id"],
            session_id=invite.session_id,
            invite_id=invite.id,
            name=row["p_name"],
            email=row["p_email"],
            token_hash=row["p_token_hash"],
            created_at=row["p_created_at"],
        )
        return person, invite

    async def list_participants(self, session_id: str) -> list[ParticipantRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM participants WHERE session_id = ? ORDER BY created_at", (session_id,)
        )
        return [ParticipantRecord.from_row(r) for r in rows]

    async def names(self, session_id: str) -> dict[str, str]:
        """User id -> name of everyone who can act in a session (links included, for data
        written before links became doors)."""
        rows = await self.db.fetchall(
            "SELECT 1 AS invite, id, name FROM invites WHERE session_id = ?"
            " UNION ALL SELECT 0, id, name FROM participants WHERE session_id = ?",
            (session_id, session_id),
        )
        return {invite_user_id(r["id"]) if r["invite"] else r["id"]: r["name"] for r in rows}

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

    async def revoke_invite(self, invite: InviteRecord, actor: Actor | str) -> None:
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
        actor: Actor | str,
        action: str,
        target: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.db.write(audit_statement(session_id, actor, action, target, detail or {}))

    async def audit_events(self, session_id: str) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT at, actor, actor_name, action, target, detail FROM audit"
            " WHERE session_id = ? ORDER BY id",
            (session_id,),
        )
        # Rows written before names were recorded, and the server's own, get today's name.
        names = await self.names(session_id) if any(not r["actor_name"] for r in rows) else {}
        names.setdefault("admin", "Admin")
        return [
            {
                "at": r["at"],
                "actor": r["actor"],
                "actor_name": r["actor_name"] or names.get(r["actor"]),
                "action": r["action"],
                "target": r["target"],
                "detail": json.loads(r["detail"]),
            }
            for r in rows
        ]


@dataclass(frozen=True)
class _Named:
    user_id: str
    name: str


def _insert_invite(invite: InviteRecord) -> tuple[str, tuple[Any, ...]]:
    return (
        "INSERT INTO invites (id, session_id, role, name, token_hash, created_at, created_by,"
        " expires_at, revoked_at, kind) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
            invite.kind.value,
        ),
    )
