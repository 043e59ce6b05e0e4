"""Presence: the latest awareness entry of every client id, and which connection owns it.

Awareness is relayed at once (it is not persisted and does not go through the tick).
A connection may only speak for the client ids it introduced, and the server stamps each
state's ``user`` with the identity behind the token, so nobody can pose as someone else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...shared import codec
from ...shared.schema import Awareness
from ..identity import Identity


@dataclass(slots=True)
class _Entry:
    clock: int
    state_json: str
    owner: object


class AwarenessTable:
    """Latest awareness state per client id in one room."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}

    def apply(
        self, owner: object, identity: Identity, entries: list[codec.AwarenessEntry]
    ) -> bytes | None:
        """Record a connection's awareness entries; return the message to relay, if any."""
        accepted: list[tuple[int, int, str]] = []
        for entry in entries:
            current = self._entries.get(entry.client_id)
            if current is not None and current.owner is not owner:
                continue  # another connection's client id
            if current is not None and (
                entry.clock < current.clock
                or (entry.clock == current.clock and entry.state is not None)
            ):
                continue  # stale, or an echo of what we already have
            if entry.state is None:
                state_json = "null"
                self._entries.pop(entry.client_id, None)
            else:
                state_json = json.dumps(_stamp(entry.state, identity), separators=(",", ":"))
                self._entries[entry.client_id] = _Entry(entry.clock, state_json, owner)
            accepted.append((entry.client_id, entry.clock, state_json))
        return codec.encode_awareness(accepted) if accepted else None

    def remove_owner(self, owner: object) -> bytes | None:
        """Forget a leaving connection's clients; return the removal message for the others."""
        gone = [(cid, e.clock + 1, "null") for cid, e in self._entries.items() if e.owner is owner]
        for cid, _, _ in gone:
            del self._entries[cid]
        return codec.encode_awareness(gone) if gone else None

    def snapshot(self) -> bytes | None:
        """One message with every known state, for a newcomer or a query."""
        if not self._entries:
            return None
        return codec.encode_awareness(
            [(cid, e.clock, e.state_json) for cid, e in self._entries.items()]
        )

    def states(self) -> dict[int, Any]:
        return {cid: json.loads(e.state_json) for cid, e in self._entries.items()}


def _stamp(state: dict[str, Any], identity: Identity) -> dict[str, Any]:
    user = state.get(Awareness.USER)
    user = dict(user) if isinstance(user, dict) else {}
    user["id"] = identity.user_id
    user["role"] = identity.role.value
    if not isinstance(user.get("name"), str) or not user["name"].strip():
        user["name"] = identity.name
    user["name"] = user["name"][:80]
    return {**state, Awareness.USER: user}
