"""Tokens: random, shown once, stored as sha256 hashes; resolved to an Identity.

Three kinds of token resolve here: the workspace admin's; an invite's (a role link, or a
named invite that is one person's); and a person's minted by joining a link. A link is a
door, not a person: its token is refused everywhere but :meth:`Authenticator.join`, so
everything a session records names someone who gave their name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..shared.enums import Role
from ..shared.errors import BadRequest, Forbidden, JoinRequired, NotALink, Unauthorized
from .identity import ADMIN_USER_ID, Identity
from .store.records import InviteRecord, ParticipantRecord, Records

TOKEN_PREFIX = "pr_"
MAX_NAME_CHARS = 80
MAX_EMAIL_CHARS = 254
JOIN_FIRST = "this is a role link: join first (POST /api/join with your name)"


def new_token() -> str:
    """A fresh bearer token (256 bits of randomness)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Joined:
    """A person just made from a link: the only moment their token is known."""

    identity: Identity
    token: str


class Authenticator:
    """Resolves bearer tokens: the admin token, an invite's token, or a joined person's."""

    def __init__(self, records: Records, admin_token: str) -> None:
        self._records = records
        self._admin_hash = hash_token(admin_token)

    async def resolve(self, token: str | None) -> Identity:
        """The person behind ``token``; Unauthorized (JoinRequired for a link's own token)
        or Forbidden otherwise."""
        ident = await self._resolve(token)
        if ident.is_link:
            raise JoinRequired(JOIN_FIRST)
        return ident

    async def peek(self, token: str | None) -> Identity:
        """What ``token`` is, a link included (for ``GET /api/join``: a page that holds a
        token learns whether to ask for a name before it tries to act)."""
        return await self._resolve(token)

    async def join(self, token: str | None, name: object, email: object) -> Joined:
        """Make a new person in the link's session and role, with a token of their own."""
        link = await self._resolve(token)
        if not link.is_link:
            raise NotALink("only a role link can be joined: this token is already a person's")
        assert link.session_id is not None and link.invite_id is not None
        clean_name, clean_email = _person(name, email)
        token = new_token()
        person = ParticipantRecord(
            id="u_p" + secrets.token_hex(8),
            session_id=link.session_id,
            invite_id=link.invite_id,
            name=clean_name,
            email=clean_email,
            token_hash=hash_token(token),
            created_at=time.time(),
        )
        await self._records.add_participant(person)
        return Joined(_person_identity(person, link.role, link.expires_at), token)

    async def _resolve(self, token: str | None) -> Identity:
        if not token:
            raise Unauthorized("a token is required (Authorization: Bearer or ?token=)")
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._admin_hash):
            return Identity(ADMIN_USER_ID, "Admin", Role.OWNER, None)
        joined = await self._records.participant_by_token_hash(digest)
        if joined is not None:
            person, invite = joined
            _check_active(invite)
            return _person_identity(person, invite.role, invite.expires_at)
        own = await self._records.invite_by_token_hash(digest)
        if own is None:
            raise Unauthorized("unknown token")
        _check_active(own)
        return identity_of(own)


def identity_of(invite: InviteRecord) -> Identity:
    """The identity of an invite's own token (a person's, or a link's)."""
    return Identity(
        invite.user_id,
        invite.name,
        invite.role,
        invite.session_id,
        invite.id,
        expires_at=invite.expires_at,
        is_link=invite.is_link,
    )


def _person_identity(person: ParticipantRecord, role: Role, expires_at: float | None) -> Identity:
    return Identity(
        person.id,
        person.name,
        role,
        person.session_id,
        person.invite_id,
        expires_at=expires_at,
        email=person.email,
    )


def _check_active(invite: InviteRecord) -> None:
    if invite.revoked_at is not None:
        raise Forbidden("this invite was revoked")
    if invite.expires_at is not None and invite.expires_at <= time.time():
        raise Unauthorized("this invite has expired")


def _person(name: object, email: object) -> tuple[str, str | None]:
    """A joining person's name (trimmed, 1 to 80 characters) and optional email."""
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME_CHARS:
        raise BadRequest(f"name is required: text of 1 to {MAX_NAME_CHARS} characters")
    if not name.strip().isprintable():
        raise BadRequest("name must be one line of printable text")
    if email is None or email == "":
        return name.strip(), None
    if not isinstance(email, str):
        raise BadRequest("email must be text (or left out)")
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if (
        len(email) > MAX_EMAIL_CHARS
        or not at
        or not local
        or "." not in domain
        or any(c.isspace() for c in email)
    ):
        raise BadRequest(f"email must look like name@example.com (at most {MAX_EMAIL_CHARS})")
    return name.strip(), email
