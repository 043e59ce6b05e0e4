"""Who is acting: the identity a token resolves to."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..shared.enums import Role
from ..shared.errors import Forbidden
from ..shared.permissions import Action, allows

ADMIN_USER_ID = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token is: the admin (owner everywhere), a person in one session, or a role link.

    A person holds a named invite's token or one minted by joining a link; either way the
    invite (``invite_id``) bounds their rights: its role, expiry and revocation. A link's
    own token is an Identity too, with ``is_link`` set, good only for joining.
    """

    user_id: str
    name: str
    role: Role
    #: The one session an invite is for; None for the workspace admin.
    session_id: str | None
    #: The invite behind the token: a named invite, or the link a person joined through.
    invite_id: str | None = None
    #: When the invite stops working (Unix seconds); None for never.
    expires_at: float | None = None
    #: A role link's own token: not a person, only a way to become one.
    is_link: bool = False
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.session_id is None

    def expired(self) -> bool:
        """Whether the invite behind this identity has expired (checked on every write of a
        connection that outlives it, so the common case costs one comparison)."""
        return self.expires_at is not None and self.expires_at <= time.time()

    def in_session(self, session_id: str) -> Identity:
        """This identity as it acts in ``session_id``; Forbidden for another session's token."""
        if self.is_admin or self.session_id == session_id:
            return self
        raise Forbidden("this token belongs to another session")

    def require(self, session_id: str, action: Action) -> Identity:
        """Check the role allows ``action`` in ``session_id``; return the identity."""
        ident = self.in_session(session_id)
        if not allows(ident.role, action):
            raise Forbidden(f"a {ident.role.value} may not {action.value} in this session")
        return ident
