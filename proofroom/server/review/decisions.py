"""Approvers' decisions on layers, and the state rule (DESIGN.md section 6)."""

from __future__ import annotations

import time
from typing import Any

from pycrdt import Map

from ...shared import schema
from ...shared.enums import DECISION_ORDER, Decision, JobStatus, LayerState, PinStatus
from ...shared.errors import BadRequest, Conflict, NotFound
from ...shared.permissions import Action
from ..identity import Identity
from ..jobs.queue import JobQueue
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.db import Statement
from ..store.records import Records, audit_statement
from . import events, locks

MAX_NOTE_CHARS = 2000

_STATE_OF = {
    Decision.REJECT: LayerState.REJECTED,
    Decision.REQUEST_CHANGES: LayerState.CHANGES_REQUESTED,
}


def layer_state(decisions: list[Decision], required_approvals: int) -> LayerState:
    """The least favourable decision so far; approved only with enough approvals."""
    for decision in DECISION_ORDER:  # least favourable first
        if decision in decisions and decision in _STATE_OF:
            return _STATE_OF[decision]
    approvals = sum(1 for d in decisions if d is Decision.APPROVE)
    if approvals and approvals >= required_approvals:
        return LayerState.APPROVED
    return LayerState.PENDING


def parse_decision(body: dict[str, Any]) -> tuple[Decision, str]:
    """A decision request's body (``decision``, optional ``note``), as for layers and
    revisions alike; 400 when it is not one."""
    try:
        decision = Decision(str(body.get("decision")))
    except ValueError:
        raise BadRequest(f"decision must be one of {[d.value for d in Decision]}") from None
    note = "" if body.get("note") is None else body["note"]  # [] or 0 is no note: 400
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise BadRequest(f"note must be text of at most {MAX_NOTE_CHARS} characters")
    return decision, note


def variant_states(derived: list[LayerState]) -> list[LayerState]:
    """The states of one fix request's variants (in the order they were made), given the
    state each one's own decisions give it: approving one supersedes its siblings.

    The first approved variant is kept; every other variant that would be pending (or,
    after the required approvals were lowered, approved too) is superseded, so it no
    longer waits for review. A variant someone rejected or asked changes on keeps that.
    """
    kept = next((i for i, state in enumerate(derived) if state is LayerState.APPROVED), None)
    if kept is None:
        return list(derived)
    return [
        LayerState.SUPERSEDED
        if i != kept and state in (LayerState.PENDING, LayerState.APPROVED)
        else state
        for i, state in enumerate(derived)
    ]


def fix_of(layer: Map[Any]) -> str:
    """The fix request (round) a layer belongs to; a layer from before rounds is its own."""
    return str(layer.get(schema.Layer.FIX) or layer.get(schema.Layer.ID))


def _own_state(layer: Map[Any], required: int) -> LayerState:
    recorded = layer.get(schema.Layer.DECISIONS)
    everyone: dict[str, Any] = recorded.to_py() or {} if isinstance(recorded, Map) else {}
    return layer_state([Decision(d["decision"]) for d in everyone.values()], required)


def _derive(room: Room, required: int, fix: str | None = None) -> list[tuple[Map[Any], LayerState]]:
    """Every layer (of round ``fix``, or all) with the state the rule gives it now."""
    groups: dict[str, list[Map[Any]]] = {}
    for layer in room.layers:
        if isinstance(layer, Map) and (fix is None or fix_of(layer) == fix):
            groups.setdefault(fix_of(layer), []).append(layer)
    out: list[tuple[Map[Any], LayerState]] = []
    for variants in groups.values():
        states = variant_states([_own_state(layer, required) for layer in variants])
        out.extend(zip(variants, states, strict=True))
    return out


def find_layer(room: Room, layer_id: str) -> Map[Any] | None:
    for layer in room.layers:
        if isinstance(layer, Map) and layer.get(schema.Layer.ID) == layer_id:
            return layer
    return None


class Decisions:
    """Record decisions, derive layer states, resolve pins, and say so to everyone."""

    def __init__(
        self,
        records: Records,
        rooms: RoomManager,
        queue: JobQueue,
        bus: events.EventBus,
        blobs: BlobStore,
    ) -> None:
        self.records = records
        self.rooms = rooms
        self.queue = queue
        self.bus = bus
        self.blobs = blobs

    async def decide(
        self, session_id: str, layer_id: str, body: dict[str, Any], actor: Identity
    ) -> dict[str, Any]:
        actor = actor.require(session_id, Action.DECIDE)
        decision, note = parse_decision(body)
        session = await self.records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        room = await self.rooms.acquire(session_id)
        found = find_layer(room, layer_id)
        if found is None:
            await self._explain_missing(session_id, layer_id)
        locked = locks.current_locks(room)
        if decision is Decision.APPROVE and found is not None:
            await self._refuse_if_covering(session_id, [found.to_py() or {}], locked)
        now = time.time()

        def write(room: Room) -> dict[str, Any]:
            layer = find_layer(room, layer_id)
            if layer is None:
                raise NotFound("no such layer in this session")
            if decision is Decision.APPROVE:
                locks.require_unchanged(room, locked)
            fix = fix_of(layer)
            if decision is Decision.APPROVE:
                _refuse_if_sibling_approved(room, layer_id, fix)
            recorded = layer.get(schema.Layer.DECISIONS)
            if not isinstance(recorded, Map):
                recorded = Map()
                layer[schema.Layer.DECISIONS] = recorded
            previous = recorded.get(actor.user_id)
            recorded[actor.user_id] = {"decision": decision.value, "note": note, "at": now}
            before = layer.get(schema.Layer.STATE)
            everyone: dict[str, Any] = recorded.to_py() or {}
            state = LayerState.PENDING
            siblings = []
            # The decided layer and its siblings, in one rule: approving one supersedes
            # the others; withdrawing that approval puts them back up for review.
            for lay, new in _derive(room, session.required_approvals, fix):
                lay_id = str(lay.get(schema.Layer.ID))
                old = lay.get(schema.Layer.STATE)
                if lay_id == layer_id:
                    state = new
                elif new.value != old:
                    siblings.append({"layer": lay_id, "state": new.value, "previous_state": old})
                if new.value != old:
                    lay[schema.Layer.STATE] = new.value
            pin_id = layer.get(schema.Layer.PIN_ID)
            pin_change = _sync_pin(room, pin_id, layer_id, state, before)
            return {
                "pin_id": pin_id,
                "previous": previous,
                "before": before,
                "state": state.value,
                "pin": pin_change,
                "decisions": everyone,
                "siblings": siblings,
            }

        def audit(outcome: dict[str, Any]) -> list[Statement]:
            return [
                audit_statement(
                    session_id,
                    actor,
                    "layer.decision",
                    layer_id,
                    {
                        "decision": decision.value,
                        "note": note,
                        "replaces": outcome["previous"],
                        "state": outcome["state"],
                        "was": outcome["before"],
                        "variants": outcome["siblings"],
                    },
                )
            ]

        # The decision and its audit row commit together, or neither does.
        outcome = await room.server_write(write, audit)
        self.bus.publish(
            events.Event(
                events.LAYER_DECISION,
                session_id,
                {
                    "layer": layer_id,
                    "pin": outcome["pin_id"],
                    "decision": decision.value,
                    "note": note,
                    "user": actor.user_id,
                    "state": outcome["state"],
                    "previous_state": outcome["before"],
                    "at": now,
                },
            )
        )
        for sibling in outcome["siblings"]:
            self.bus.publish(
                events.Event(
                    events.LAYER_DECISION,
                    session_id,
                    {
                        **sibling,
                        "pin": outcome["pin_id"],
                        "decision": None,
                        "user": actor.user_id,
                        "at": now,
                        "reason": f"a variant of the same fix ({layer_id}) was decided",
                    },
                )
            )
        if outcome["pin"] is not None:
            kind = events.PIN_RESOLVED if outcome["pin"] == "resolved" else events.PIN_REOPENED
            self.bus.publish(
                events.Event(
                    kind,
                    session_id,
                    {"pin": outcome["pin_id"], "by": actor.user_id, "layer": layer_id},
                )
            )
        return {
            "layer": {"id": layer_id, "state": outcome["state"], "decisions": outcome["decisions"]},
            "variants": [{"id": v["layer"], "state": v["state"]} for v in outcome["siblings"]],
        }

    async def decide_revision(
        self, session_id: str, revision_id: str, body: dict[str, Any], actor: Identity
    ) -> dict[str, Any]:
        """An approver's decision on a whole revision (an upscale, a clip): the same body
        and state rule as a layer's, recorded, audited and announced the same way."""
        actor = actor.require(session_id, Action.DECIDE)
        decision, note = parse_decision(body)
        session = await self.records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        if revision_id == schema.ORIGINAL_REVISION:
            raise Conflict("v1 is the upload itself; decide on its layers, or on a revision")
        room = await self.rooms.acquire(session_id)
        now = time.time()

        def write(room: Room) -> dict[str, Any]:
            revision = _find_revision(room, revision_id)
            if revision is None:
                raise NotFound("no such revision in this session")
            recorded = revision.get(schema.Revision.DECISIONS)
            if not isinstance(recorded, Map):
                recorded = Map()
                revision[schema.Revision.DECISIONS] = recorded
            previous = recorded.get(actor.user_id)
            recorded[actor.user_id] = {"decision": decision.value, "note": note, "at": now}
            before = revision.get(schema.Revision.STATE)
            everyone: dict[str, Any] = recorded.to_py() or {}
            state = layer_state(
                [Decision(d["decision"]) for d in everyone.values()], session.required_approvals
            )
            if state.value != before:
                revision[schema.Revision.STATE] = state.value
            return {"previous": previous, "before": before, "state": state.value, "all": everyone}

        def audit(outcome: dict[str, Any]) -> list[Statement]:
            return [
                audit_statement(
                    session_id,
                    actor,
                    "revision.decision",
                    revision_id,
                    {
                        "decision": decision.value,
                        "note": note,
                        "replaces": outcome["previous"],
                        "state": outcome["state"],
                        "was": outcome["before"],
                    },
                )
            ]

        # The decision and its audit row commit together, or neither does.
        outcome = await room.server_write(write, audit)
        self.bus.publish(
            events.Event(
                events.REVISION_DECISION,
                session_id,
                {
                    "revision": revision_id,
                    "decision": decision.value,
                    "note": note,
                    "user": actor.user_id,
                    "state": outcome["state"],
                    "previous_state": outcome["before"],
                    "at": now,
                },
            )
        )
        return {
            "revision": {"id": revision_id, "state": outcome["state"], "decisions": outcome["all"]}
        }

    async def set_required_approvals(
        self, session_id: str, required: int, actor: Identity
    ) -> list[dict[str, Any]]:
        """Change how many approvals a layer needs, and re-derive every layer's state."""
        actor = actor.require(session_id, Action.ADMINISTER)
        room = await self.rooms.acquire(session_id)
        locked = locks.current_locks(room)
        # Fewer approvals needed may approve a layer no approver could (it covers a lock).
        promoted = [lay for lay, state in _rederive(room, required) if state is LayerState.APPROVED]
        await self._refuse_if_covering(session_id, [lay.to_py() or {} for lay in promoted], locked)
        cleared = {lay.get(schema.Layer.ID) for lay in promoted}

        def write(room: Room) -> list[dict[str, Any]]:
            moves = _rederive(room, required)
            locks.require_unchanged(room, locked)
            if any(
                state is LayerState.APPROVED and lay.get(schema.Layer.ID) not in cleared
                for lay, state in moves
            ):
                raise Conflict("the session's versions changed meanwhile; try again")
            changed = []
            for layer, state in moves:
                before = layer.get(schema.Layer.STATE)
                layer[schema.Layer.STATE] = state.value
                layer_id = str(layer.get(schema.Layer.ID))
                pin = _sync_pin(room, layer.get(schema.Layer.PIN_ID), layer_id, state, before)
                changed.append(
                    {
                        "layer": layer_id,
                        "pin": layer.get(schema.Layer.PIN_ID),
                        "state": state.value,
                        "previous_state": before,
                        "pin_change": pin,
                    }
                )
            _rederive_revisions(room, required, revisions_changed)
            return changed

        revisions_changed: list[dict[str, Any]] = []
        statements: list[Statement] = [
            ("UPDATE sessions SET required_approvals = ? WHERE id = ?", (required, session_id)),
            audit_statement(
                session_id, actor, "session.update", session_id, {"required_approvals": required}
            ),
        ]
        # The setting, its audit row and the states it changes commit together.
        changed: list[dict[str, Any]] = await self.rooms.server_write(
            session_id, write, lambda _: statements
        )
        for change in changed:
            self.bus.publish(
                events.Event(
                    events.LAYER_DECISION,
                    session_id,
                    {
                        "layer": change["layer"],
                        "pin": change["pin"],
                        "decision": None,
                        "user": actor.user_id,
                        "state": change["state"],
                        "previous_state": change["previous_state"],
                        "at": time.time(),
                        "reason": "required_approvals changed",
                    },
                )
            )
        for change in revisions_changed:
            self.bus.publish(
                events.Event(
                    events.REVISION_DECISION,
                    session_id,
                    {
                        **change,
                        "decision": None,
                        "user": actor.user_id,
                        "at": time.time(),
                        "reason": "required_approvals changed",
                    },
                )
            )
        return changed

    async def _refuse_if_covering(
        self, session_id: str, layers: list[dict[str, Any]], locked: list[locks.Box]
    ) -> None:
        """Conflict if one of these layers would change a locked pixel once approved."""
        if not locked or not layers:
            return
        frozen = await locks.frozen_layers(self.records.db, session_id)
        for layer in layers:
            if layer.get(schema.Layer.ID) in frozen:
                continue  # part of the picture the locks froze
            touched = await locks.layer_covers(self.blobs, layer, locked)
            if touched:
                raise Conflict(
                    f"{layer.get(schema.Layer.ID)} changes pixels inside the locked regions"
                    f" {locks.describe(touched)} (it was made before they were locked), so it"
                    " cannot be approved; ask for a new version, or ask the owner to unlock"
                )

    async def _explain_missing(self, session_id: str, layer_id: str) -> None:
        if layer_id.startswith("l_"):
            job = await self.queue.get(layer_id[2:])
            if job is not None and job.session_id == session_id:
                if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                    raise Conflict(f"that job {job.status.value}; it left no version to decide on")
                if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                    raise Conflict("that job has not finished yet")
        raise NotFound("no such layer in this session")


def _rederive_revisions(room: Room, required: int, changed: list[dict[str, Any]]) -> None:
    """Re-derive every revision's state for ``required`` approvals (inside a write)."""
    for revision in room.revisions:
        if (
            not isinstance(revision, Map)
            or revision.get(schema.Revision.ID) == schema.ORIGINAL_REVISION
        ):
            continue
        recorded = revision.get(schema.Revision.DECISIONS)
        everyone: dict[str, Any] = recorded.to_py() or {} if isinstance(recorded, Map) else {}
        state = layer_state([Decision(d["decision"]) for d in everyone.values()], required)
        before = revision.get(schema.Revision.STATE)
        if state.value != before:
            revision[schema.Revision.STATE] = state.value
            changed.append(
                {
                    "revision": revision.get(schema.Revision.ID),
                    "state": state.value,
                    "previous_state": before,
                }
            )


def _find_revision(room: Room, revision_id: str) -> Map[Any] | None:
    for entry in room.revisions:
        if isinstance(entry, Map) and entry.get(schema.Revision.ID) == revision_id:
            return entry
    return None


def _rederive(room: Room, required: int) -> list[tuple[Map[Any], LayerState]]:
    """The layers whose state changes when ``required`` approvals are needed, and to what."""
    return [
        (layer, state)
        for layer, state in _derive(room, required)
        if state.value != layer.get(schema.Layer.STATE)
    ]


def _refuse_if_sibling_approved(room: Room, layer_id: str, fix: str) -> None:
    """Conflict if another variant of this layer's fix request is approved already."""
    for lay in room.layers:
        if (
            isinstance(lay, Map)
            and lay.get(schema.Layer.ID) != layer_id
            and fix_of(lay) == fix
            and lay.get(schema.Layer.STATE) == LayerState.APPROVED.value
        ):
            raise Conflict(
                f"{lay.get(schema.Layer.ID)}, another variant of the same fix, is approved;"
                " withdraw that approval (request changes or reject) to approve this one"
            )


def _sync_pin(room: Room, pin_id: Any, layer_id: str, state: LayerState, before: Any) -> str | None:
    """Approving a fix resolves its pin; withdrawing the pin's only approval reopens it."""
    pin = room.pins.get(pin_id) if isinstance(pin_id, str) else None
    if not isinstance(pin, Map):
        return None
    status = pin.get(schema.Pin.STATUS)
    if state is LayerState.APPROVED and status != PinStatus.RESOLVED.value:
        pin[schema.Pin.STATUS] = PinStatus.RESOLVED.value
        return "resolved"
    if (
        state is not LayerState.APPROVED
        and before == LayerState.APPROVED.value
        and status == PinStatus.RESOLVED.value
    ):
        still_approved = any(
            isinstance(lay, Map)
            and lay.get(schema.Layer.PIN_ID) == pin_id
            and lay.get(schema.Layer.ID) != layer_id
            and lay.get(schema.Layer.STATE) == LayerState.APPROVED.value
            for lay in room.layers
        )
        if not still_approved:
            pin[schema.Pin.STATUS] = PinStatus.OPEN.value
            return "reopened"
    return None
