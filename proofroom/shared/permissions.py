"""The role x action table (DESIGN.md section 5), enforced by the server."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from .enums import Role


class Action(StrEnum):
    """Something a participant may try to do in a session."""

    #: See the canvas, the document and presence.
    VIEW = "view"
    #: Add pins and replies; edit and resolve one's own.
    COMMENT = "comment"
    #: Promote a pin to a fix, upload a version, cancel jobs.
    EDIT = "edit"
    #: Approve, request changes on or reject a layer.
    DECIDE = "decide"
    #: Invite, revoke, lock regions, export.
    ADMINISTER = "administer"


PERMISSIONS: Final[dict[Role, frozenset[Action]]] = {
    Role.VIEWER: frozenset({Action.VIEW}),
    Role.COMMENTER: frozenset({Action.VIEW, Action.COMMENT}),
    Role.EDITOR: frozenset({Action.VIEW, Action.COMMENT, Action.EDIT}),
    Role.APPROVER: frozenset({Action.VIEW, Action.COMMENT, Action.DECIDE}),
    Role.OWNER: frozenset(set(Action)),
}


def allows(role: Role, action: Action) -> bool:
    """Whether ``role`` may perform ``action``."""
    return action in PERMISSIONS[role]


def can_write_doc(role: Role) -> bool:
    """Whether a role's CRDT updates are applied at all (viewers' are not)."""
    return allows(role, Action.COMMENT)
