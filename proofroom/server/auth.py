"""Tokens: random, shown once, stored as sha256 hashes; resolved to an Identity."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from ..shared.enums import Role
from ..shared.errors import Forbidden, Unauthorized
from .identity import ADMIN_USER_ID, Identity
from .store.records import InviteRecord, Records

TOKEN_PREFIX = "pr_"


def new_token() -> str:
    """A fresh bearer token (256 bits of randomness)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def user_id_for(invite_id: str) -> str:
    return f"u_{invite_id}"


class Authenticator:
    """Resolves bearer tokens: the admin token, or an invite's token."""

    def __init__(self, records: Records, admin_token: str) -> None:
        self._records = records
        self._admin_hash = hash_token(admin_token)

    async def resolve(self, token: str | None) -> Identity:
        """The identity behind ``token``; Unauthorized or Forbidden otherwise."""
        if not token:
            raise Unauthorized("a token is required (Authorization: Bearer or ?token=)")
        digest = hash_token(token)
        if hmac.compare_digest(digest, self._admin_hash):
            return Identity(ADMIN_USER_ID, "Admin", Role.OWNER, None)
        invite = await self._records.invite_by_token_hash(digest)
        if invite is None:
            raise Unauthorized("unknown token")
        if invite.revoked_at is not None:
            raise Forbidden("this invite was revoked")
        if invite.expires_at is not None and invite.expires_at <= time.time():
            raise Unauthorized("this invite has expired")
        return identity_of(invite)


def identity_of(invite: InviteRecord) -> Identity:
    return Identity(user_id_for(invite.id), invite.name, invite.role, invite.session_id, invite.id)
