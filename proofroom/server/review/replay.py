"""Meeting replay: a session's history as ordered events, read from its document log.

The log is a snapshot plus the updates committed since (compaction folds the oldest updates
into the snapshot now and then, DESIGN.md section 4). Each update in the tail is applied in
order to a scratch document and what it changed becomes events, stamped with the time the
server committed it. What the snapshot already holds is told from the times the document
keeps (a pin's ``created_at``, a reply's ``at``, a version's ``created_at``, a decision's
``at``), so the events stay right after a restart or a compaction; the snapshot keeps only
each person's latest decision on a version, and so does its part of the replay.

Every event is ``{seq, at, kind, actor, actor_id, pin, version, from, ...}``: ``actor`` is
the person's name (None where the document does not say who, as for a resolved pin),
``from`` says whether it was read from the log or told from the snapshot. Replaying a long
log applies every update once: callers run :func:`replay` in a worker thread.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from pycrdt import Array, Doc, Map

from ...shared import schema
from ..identity import ADMIN_USER_ID
from ..store.db import Database
from ..store.records import Records, SessionRecord
from .replay_reading import LayerReading, PinReading, read_layer, read_layers, read_pin

#: Event kinds, in the order a reader meets them in a session's life.
SESSION_CREATED = "session.created"
PIN_CREATED = "pin.created"
PIN_MOVED = "pin.moved"
PIN_EDITED = "pin.edited"
PIN_RESOLVED = "pin.resolved"
PIN_REOPENED = "pin.reopened"
PIN_DELETED = "pin.deleted"
REPLY_CREATED = "reply.created"
REPLY_EDITED = "reply.edited"
REPLY_DELETED = "reply.deleted"
VERSION_CREATED = "version.created"
VERSION_DECISION = "version.decision"
VERSION_STATE = "version.state"
KINDS = (
    SESSION_CREATED,
    PIN_CREATED,
    PIN_MOVED,
    PIN_EDITED,
    PIN_RESOLVED,
    PIN_REOPENED,
    PIN_DELETED,
    REPLY_CREATED,
    REPLY_EDITED,
    REPLY_DELETED,
    VERSION_CREATED,
    VERSION_DECISION,
    VERSION_STATE,
)
FROM_LOG = "log"
FROM_SNAPSHOT = "snapshot"


class _Teller:
    """Turns differences between two readings of the document into events."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names
        self.events: list[dict[str, Any]] = []

    def emit(
        self,
        kind: str,
        at: float | None,
        actor: str | None,
        origin: str,
        **data: Any,
    ) -> None:
        self.events.append(
            {
                "at": at,
                "kind": kind,
                "actor": self.names.get(actor, actor) if actor is not None else None,
                "actor_id": actor,
                "pin": data.pop("pin", None),
                "version": data.pop("version", None),
                "from": origin,
                **data,
            }
        )

    def pin(
        self,
        pid: str,
        old: PinReading | None,
        new: PinReading | None,
        at: float | None,
        source: str,
        status_at: float | None = None,
    ) -> None:
        """``status_at``: from the snapshot, the latest time its pin's status can have
        changed (the document does not keep when: the last of its own and its versions'
        times)."""
        # From the snapshot, each event takes the time the document kept for it.
        told = source == FROM_SNAPSHOT
        if new is None:
            if old is not None:
                self.emit(PIN_DELETED, at, None, source, pin=pid)
            return
        if old is None:
            self.emit(
                PIN_CREATED,
                new.created_at if told else at,
                new.author,
                source,
                pin=pid,
                x=new.x,
                y=new.y,
                text=new.text,
                region=new.region,
            )
            old = PinReading(new.x, new.y, new.text, "open", new.author, None, None, new.region)
        if (new.x, new.y) != (old.x, old.y):
            self.emit(
                PIN_MOVED,
                new.updated_at if told else at,
                new.author,
                source,
                pin=pid,
                x=new.x,
                y=new.y,
            )
        if new.text != old.text:
            self.emit(
                PIN_EDITED,
                new.updated_at if told else at,
                new.author,
                source,
                pin=pid,
                text=new.text,
            )
        for cid, (author, text, deleted, c_at) in new.thread.items():
            before = old.thread.get(cid)
            when = c_at if told else at
            if before is None:
                self.emit(REPLY_CREATED, when, author, source, pin=pid, comment=cid, text=text)
                if deleted:
                    self.emit(REPLY_DELETED, when, author, source, pin=pid, comment=cid)
                continue
            if deleted and not before[2]:
                self.emit(REPLY_DELETED, at, author, source, pin=pid, comment=cid)
            elif text != before[1]:
                self.emit(REPLY_EDITED, at, author, source, pin=pid, comment=cid, text=text)
        if new.status != old.status:
            kind = PIN_RESOLVED if new.status == "resolved" else PIN_REOPENED
            when = status_at if told else at
            self.emit(kind, when, None, source, pin=pid)

    def layer(
        self, old: LayerReading | None, new: LayerReading, at: float | None, source: str
    ) -> None:
        told = source == FROM_SNAPSHOT
        if old is None:
            self.emit(
                VERSION_CREATED,
                new.created_at if told else at,
                new.author,
                source,
                pin=new.pin,
                version=new.id,
                number=new.number,
                fix=new.fix,
                variant=new.variant,
                via=new.source,
            )
        before = old.decisions if old is not None else {}
        for who, (decision, note, d_at) in sorted(
            new.decisions.items(), key=lambda item: item[1][2] or 0.0
        ):
            if before.get(who) == (decision, note, d_at):
                continue
            when = d_at if told else at
            self.emit(
                VERSION_DECISION,
                when,
                who,
                source,
                pin=new.pin,
                version=new.id,
                number=new.number,
                decision=decision,
                note=note,
            )
        old_state = old.state if old is not None else "pending"
        if new.state != old_state:
            decided = [d[2] for d in new.decisions.values() if d[2] is not None]
            when = max(decided, default=new.created_at) if told else at
            self.emit(
                VERSION_STATE,
                when,
                None,
                source,
                pin=new.pin,
                version=new.id,
                number=new.number,
                state=new.state,
            )


@dataclass(frozen=True)
class LoggedUpdate:
    """One update of the log's tail and when the server committed it."""

    data: bytes
    at: float


def replay(
    snapshot: bytes | None,
    tail: Sequence[LoggedUpdate],
    names: Mapping[str, str],
    *,
    created_at: float,
    created_by: str | None = None,
) -> list[dict[str, Any]]:
    """The session's history, oldest first (see the module docstring)."""
    teller = _Teller(names)
    teller.emit(SESSION_CREATED, created_at, created_by, FROM_SNAPSHOT)
    doc: Doc[Any] = Doc()
    pins = doc.get(schema.PINS, type=Map)
    layers = doc.get(schema.LAYERS, type=Array)
    if snapshot:
        doc.apply_update(snapshot)
    seen_pins = {str(k): p for k, v in pins.items() if (p := read_pin(v)) is not None}
    #: What each index of ``layers`` held after the last update.
    seen_layers = read_layers(layers)
    # Versions first: on equal times a decision comes before the pin it resolved.
    latest: dict[str, float] = {}
    for lay in seen_layers:
        if lay is None:
            continue
        teller.layer(None, lay, None, FROM_SNAPSHOT)
        times = [lay.created_at, *(d[2] for d in lay.decisions.values())]
        if lay.pin is not None:
            latest[lay.pin] = max([latest.get(lay.pin, 0.0), *(t for t in times if t)])
    for pid, pin in seen_pins.items():
        times = [pin.created_at, pin.updated_at, *(c[3] for c in pin.thread.values())]
        status_at = max([latest.get(pid, 0.0), *(t for t in times if t)])
        teller.pin(pid, None, pin, None, FROM_SNAPSHOT, status_at or None)
    told = teller.events[1:]
    told.sort(key=lambda e: e["at"] if e["at"] is not None else created_at)
    teller.events[1:] = told

    touched: set[str] = set()
    # Layer indices whose content changed; ``appended`` while the array only grew at its
    # end (the server appends versions), ``reshaped`` once anything else happened to it.
    touched_layers: set[int] = set()
    shape = {"appended": False, "reshaped": False}

    def on_pins(events: Iterable[Any]) -> None:
        for event in events:
            path = event.path
            if path:
                touched.add(str(path[0]))
            else:
                touched.update(str(k) for k in (getattr(event, "keys", None) or {}))

    def on_layers(events: Iterable[Any]) -> None:
        for event in events:
            path = event.path
            if path:
                if isinstance(path[0], int):
                    touched_layers.add(path[0])
                continue
            delta = list(getattr(event, "delta", None) or [])
            if delta and "retain" in delta[0]:
                delta = delta[1:]
            if delta and all(set(op) == {"insert"} for op in delta):
                shape["appended"] = True
            else:
                shape["reshaped"] = True

    pins_sub = pins.observe_deep(on_pins)
    layers_sub = layers.observe_deep(on_layers)
    try:
        for update in tail:
            doc.apply_update(update.data)
            # Versions first: a decision comes before the pin it resolves in one update.
            if shape["reshaped"] or shape["appended"] or touched_layers:
                seen_layers = _tell_layers(
                    teller, layers, seen_layers, touched_layers, shape, update.at
                )
            for pid in sorted(touched):
                new = read_pin(pins.get(pid)) if pid in pins else None
                teller.pin(pid, seen_pins.get(pid), new, update.at, FROM_LOG)
                if new is None:
                    seen_pins.pop(pid, None)
                else:
                    seen_pins[pid] = new
            touched.clear()
    finally:
        pins.unobserve(pins_sub)
        layers.unobserve(layers_sub)
    for seq, event in enumerate(teller.events):
        event["seq"] = seq
    return teller.events


def _tell_layers(
    teller: _Teller,
    layers: Array[Any],
    seen: list[LayerReading | None],
    touched: set[int],
    shape: dict[str, bool],
    at: float,
) -> list[LayerReading | None]:
    """Tell what one update did to the layers; what the array holds now."""
    if shape["reshaped"]:
        now = read_layers(layers)
        before = {lay.id: lay for lay in seen if lay is not None}
        for lay in now:
            if lay is not None:
                teller.layer(before.get(lay.id), lay, at, FROM_LOG)
    else:
        now = list(seen)
        for i in sorted(touched):
            if i < len(now):
                lay = read_layer(layers[i], i + 1)
                if lay is not None:
                    teller.layer(now[i], lay, at, FROM_LOG)
                now[i] = lay
        for lay in read_layers(layers, len(now)):
            if lay is not None:
                teller.layer(None, lay, at, FROM_LOG)
            now.append(lay)
    touched.clear()
    shape["appended"] = shape["reshaped"] = False
    return now


#: Replays run in worker threads, a few at a time (a long log is CPU work); one limiter
#: per event loop, as asyncio's primitives belong to the loop that first waits on them.
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)
CONCURRENT_REPLAYS = 2


def _limiter() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = anyio.CapacityLimiter(CONCURRENT_REPLAYS)
    return limiter


async def people(records: Records, session_id: str) -> dict[str, str]:
    """Names of everyone who can appear in a session's document, by user id."""
    return {**await records.names(session_id), ADMIN_USER_ID: "Admin"}


async def session_history(db: Database, records: Records, session: SessionRecord) -> dict[str, Any]:
    """``{session, people, events}``: what ``GET /api/sessions/{id}/replay`` answers."""
    # The tail first: a compaction that lands between the two reads moves updates into the
    # snapshot read second, and applying an update twice changes nothing; the other order
    # could miss the updates it folded.
    rows = await db.fetchall(
        "SELECT data, created_at FROM doc_updates WHERE session_id = ? ORDER BY id",
        (session.id,),
    )
    snap = await db.fetchone("SELECT data FROM doc_snapshots WHERE session_id = ?", (session.id,))
    tail = [LoggedUpdate(bytes(r["data"]), float(r["created_at"])) for r in rows]
    names = await people(records, session.id)
    events = await anyio.to_thread.run_sync(
        lambda: replay(
            bytes(snap["data"]) if snap else None,
            tail,
            names,
            created_at=session.created_at,
            created_by=session.created_by,
        ),
        limiter=_limiter(),
    )
    return {
        "session": {
            "id": session.id,
            "title": session.title,
            "width": session.width,
            "height": session.height,
            "base": session.base_blob,
            "created_at": session.created_at,
        },
        "people": names,
        "updates": len(tail),
        "events": events,
    }
