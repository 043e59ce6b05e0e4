"""Who is acting: the identity a token resolves to."""

from __future__ import annotations

from dataclasses import dataclass

from ..shared.enums import Role
from ..shared.errors import Forbidden
from ..shared.permissions import Action, allows

ADMIN_USER_ID = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """A participant: the admin (owner everywhere) or an invite's holder in one session."""

    user_id: str
    name: str
    role: Role
    #: The one session an invite is for; None for the workspace admin.
    session_id: str | None
    invite_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.session_id is None

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
