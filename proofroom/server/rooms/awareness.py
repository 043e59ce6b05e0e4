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
from ...shared.protocol import CloseCode
from ...shared.schema import Awareness
from ..identity import Identity


@dataclass(slots=True)
class _Entry:
    clock: int
    state_json: str
    owner: object


@dataclass(frozen=True, slots=True)
class PresenceLimits:
    """How much presence one connection, and one room, may hold."""

    #: Client ids one connection may introduce (a browser tab uses one; a reload, another).
    ids_per_connection: int = 8
    #: Bytes of one client's state, as JSON after the server's stamp.
    state_bytes: int = 4096
    #: Client ids in one room's table (well below the 10,000 a message may carry).
    ids_per_room: int = 2000


class PresenceRefused(Exception):
    """A connection went past a presence limit; it is closed with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class AwarenessTable:
    """Latest awareness state per client id in one room."""

    def __init__(self, limits: PresenceLimits | None = None) -> None:
        self._entries: dict[int, _Entry] = {}
        self._limits = limits or PresenceLimits()
        #: The client ids each connection introduced.
        self._owned: dict[object, set[int]] = {}

    def apply(
        self, owner: object, identity: Identity, entries: list[codec.AwarenessEntry]
    ) -> bytes | None:
        """Record a connection's awareness entries; return the message to relay, if any.

        Raises PresenceRefused (and records nothing of the message) past a limit.
        """
        limits = self._limits
        owned = self._owned.get(owner, set())
        new_ids: set[int] = set()
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
            else:
                state_json = json.dumps(_stamp(entry.state, identity), separators=(",", ":"))
                if len(state_json) > limits.state_bytes:
                    raise PresenceRefused(
                        CloseCode.PRESENCE_STATE_TOO_LARGE,
                        f"a presence state may hold at most {limits.state_bytes} bytes",
                    )
                if current is None and entry.client_id not in owned:
                    new_ids.add(entry.client_id)
            accepted.append((entry.client_id, entry.clock, state_json))
        if len(owned) + len(new_ids) > limits.ids_per_connection:
            raise PresenceRefused(
                CloseCode.PRESENCE_CLIENTS,
                f"one connection may speak for at most {limits.ids_per_connection} clients",
            )
        if new_ids and len(self._entries) + len(new_ids) > limits.ids_per_room:
            raise PresenceRefused(CloseCode.PRESENCE_FULL, "this session's presence table is full")
        for client_id, clock, state_json in accepted:
            if state_json == "null":
                if self._entries.pop(client_id, None) is not None:
                    owned.discard(client_id)
            else:
                self._entries[client_id] = _Entry(clock, state_json, owner)
                owned.add(client_id)
        if owned:
            self._owned[owner] = owned
        else:
            self._owned.pop(owner, None)
        return codec.encode_awareness(accepted) if accepted else None

    def remove_owner(self, owner: object) -> bytes | None:
        """Forget a leaving connection's clients; return the removal message for the others."""
        owned = self._owned.pop(owner, set())
        gone = [(cid, self._entries[cid].clock + 1, "null") for cid in owned]
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
    # Who someone is comes from their token, never from what their client claims: a
    # person's name is the one they joined with (a client may still pick its colour).
    user = state.get(Awareness.USER)
    user = dict(user) if isinstance(user, dict) else {}
    user["id"] = identity.user_id
    user["name"] = identity.name
    user["role"] = identity.role.value
    return {**state, Awareness.USER: user}
