"""Creating sessions from images, and managing their invites."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map

from ...shared import schema
from ...shared.enums import Role
from ...shared.errors import BadRequest, NotFound
from ..auth import hash_token, new_token
from ..identity import Identity
from ..images import normalize_image_in_thread
from ..store.blobs import BlobStore
from ..store.records import InviteKind, InviteRecord, Records, SessionRecord

MAX_NAME_CHARS = 80
MAX_EXPIRES_IN = 366 * 24 * 3600


@dataclass(frozen=True)
class NewInvite:
    """An invite just made: the only moment its token is known."""

    invite: InviteRecord
    token: str


class Sessions:
    """Session and invite operations shared by the HTTP API and the CLI."""

    def __init__(
        self, records: Records, blobs: BlobStore, *, max_pixels: int, max_title_chars: int
    ) -> None:
        self._records = records
        self._blobs = blobs
        self._max_pixels = max_pixels
        self._max_title_chars = max_title_chars

    async def create(
        self, image: bytes, title: str, actor: Identity
    ) -> tuple[SessionRecord, dict[Role, NewInvite]]:
        """Store the image, the session, one share link per role and the first document."""
        title = title.strip()
        if len(title) > self._max_title_chars:
            raise BadRequest(f"the title is longer than {self._max_title_chars} characters")
        normalized = await normalize_image_in_thread(image, max_pixels=self._max_pixels)
        base = await self._blobs.put(normalized.png)
        now = time.time()
        session = SessionRecord(
            id=secrets.token_hex(8),
            title=title or "Untitled review",
            width=normalized.width,
            height=normalized.height,
            base_blob=base,
            created_at=now,
            created_by=actor.user_id,
            required_approvals=1,
        )
        links = {
            role: self._make_invite(session.id, role, link_name(role), None, actor, InviteKind.LINK)
            for role in Role
        }
        await self._records.create_session(
            session, [link.invite for link in links.values()], initial_document(session)
        )
        return session, links

    async def invite(
        self,
        session_id: str,
        role: str,
        name: str,
        expires_in: Any,
        actor: Identity,
        kind: Any = InviteKind.PERSONAL.value,
    ) -> NewInvite:
        """A named invite (one person) or a role link for one role, optionally expiring
        after ``expires_in`` seconds. A link's name is only a label and may be left out."""
        await self.require(session_id)
        try:
            parsed_role = Role(role)
        except ValueError:
            raise BadRequest(f"role must be one of {[r.value for r in Role]}") from None
        try:
            parsed_kind = InviteKind(kind)
        except ValueError:
            raise BadRequest(f"kind must be one of {[k.value for k in InviteKind]}") from None
        if parsed_kind is InviteKind.LINK and name in (None, ""):
            name = link_name(parsed_role)
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise BadRequest(f"name must be 1 to {MAX_NAME_CHARS} characters")
        expires_at = None
        if expires_in is not None:
            if (
                not isinstance(expires_in, int | float)
                or isinstance(expires_in, bool)
                or not 0 < expires_in <= MAX_EXPIRES_IN
            ):
                raise BadRequest(
                    f"expires_in must be more than 0 and at most {MAX_EXPIRES_IN} seconds"
                )
            expires_at = time.time() + float(expires_in)
        made = self._make_invite(
            session_id, parsed_role, name.strip(), expires_at, actor, parsed_kind
        )
        await self._records.add_invite(made.invite, actor)
        return made

    async def revoke(self, session_id: str, invite_id: str, actor: Identity) -> InviteRecord:
        invite = await self._records.get_invite(session_id, invite_id)
        if invite is None:
            raise NotFound("no such invite in this session")
        await self._records.revoke_invite(invite, actor)
        return invite

    async def require(self, session_id: str) -> SessionRecord:
        session = await self._records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        return session

    @staticmethod
    def _make_invite(
        session_id: str,
        role: Role,
        name: str,
        expires_at: float | None,
        actor: Identity,
        kind: InviteKind,
    ) -> NewInvite:
        token = new_token()
        invite = InviteRecord(
            id=secrets.token_hex(6),
            session_id=session_id,
            role=role,
            name=name,
            token_hash=hash_token(token),
            created_at=time.time(),
            created_by=actor.user_id,
            expires_at=expires_at,
            revoked_at=None,
            kind=kind,
        )
        return NewInvite(invite, token)


def link_name(role: Role) -> str:
    """The label of a role link ("Commenter link")."""
    return f"{role.value.title()} link"


def initial_document(session: SessionRecord) -> bytes:
    """The first state of a session's document: its ``meta`` and empty roots."""
    doc: Doc[Any] = Doc()
    meta = doc.get(schema.META, type=Map)
    doc.get(schema.PINS, type=Map)
    doc.get(schema.LAYERS, type=Array)
    doc.get(schema.JOBS, type=Map)
    with doc.transaction():
        meta[schema.Meta.TITLE] = session.title
        meta[schema.Meta.WIDTH] = session.width
        meta[schema.Meta.HEIGHT] = session.height
        meta[schema.Meta.BASE] = session.base_blob
        meta[schema.Meta.CREATED_AT] = session.created_at
        meta[schema.Meta.LOCKS] = Array()
    return doc.get_update()
