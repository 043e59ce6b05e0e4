"""The write guard (DESIGN.md section 4): a client's update is judged before anyone sees it.

pycrdt has no rollback, and reverting a forbidden update with a compensating change leaks
by construction: its content reaches everyone in the broadcast, stays in the log and in
every newcomer's sync, counts toward the document's size, and a "restored" deletion is a
new object that loses concurrent edits. So a refused update is never broadcast, logged or
counted, and the document it touched is thrown away:

1. The update's bytes are read first (:mod:`proofroom.shared.updates`): unknown roots, a
   root written as the wrong type, server roots, shared types other than maps and arrays,
   values nested too deeply, arrays written as maps, and anything that depends on content
   the server does not hold (a gap in a client's clock, a change the server refused) are
   refused without touching the document.
2. The update is applied to the room's document, whose deep observers check every change
   against the writer's role and identity (who wrote the pin, which fields, transitions).
   Each Yjs client id belongs to the person who first wrote with it (or to the server): a
   struct is named by (client id, clock), and a CRDT drops a struct it already holds as a
   duplicate, so a write under someone else's id at their next clock would make their next
   change vanish for everyone. Writes under another person's id are refused; the owners
   are stored with the log (:attr:`Guard.claims`), so they hold after a restart.
3. An accepted update is then logged and broadcast as it stands. After a refusal the guard
   rebuilds the document from the bytes of every accepted change (the room's snapshot and
   log tail) and the room binds to the new one (:attr:`Guard.on_reset`). Nothing else runs
   in between: no one ever reads the refused state.

Accepting costs reading the update's bytes (a few microseconds, scripts/bench_guard.py);
refusing in step 2 costs a rebuild (about 20 ms per MB of document), which the refusal
limits per connection bound. A first version kept a separate replica and applied every
accepted update twice; the sync benchmark's p99 paid for the second apply.

The observers take pycrdt's native events where :mod:`.native_events` can: most traffic is
a writer editing fields of a pin, checked straight from the native event's path and keys
against the pin authors the guard remembers. Anything else goes through pycrdt's typed
events, as does everything when the fast paths are off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map

from ...shared import codec, schema
from ...shared.codec import MalformedMessage
from ...shared.schema import Pin
from ...shared.updates import ID, TYPE_ARRAY, UpdateShape, read_update
from ..identity import Identity
from . import native_events
from .pin_rules import NO_AUTHOR, REVISION_BOUND, PinRules

logger = logging.getLogger(__name__)

_ABSENT = object()
#: The owner of the client ids the server writes with.
SERVER_OWNER = ""
#: Values a native event carries as plain Python (anything else is a shared type).
_PLAIN = (str, int, float, bool, type(None), list, dict)
#: The pin fields whose changes :attr:`Guard.on_pins_touched` reports.
LISTENED_PIN_FIELDS = frozenset((Pin.STATUS, Pin.AUTHOR, Pin.CREATED_AT))


def new_document() -> tuple[Doc[Any], dict[str, Map[Any] | Array[Any]]]:
    """A document with the schema's roots typed."""
    doc: Doc[Any] = Doc()
    roots: dict[str, Map[Any] | Array[Any]] = {
        name: doc.get(name, type=Map if name in schema.MAP_ROOTS else Array)
        for name in (schema.META, schema.PINS, schema.LAYERS, schema.JOBS, schema.REVISIONS)
    }
    return doc, roots


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's decision on one update."""

    #: Why it was refused (empty: accepted).
    reasons: tuple[str, ...] = ()
    #: Refused because it builds on content the server does not hold: the writer's copy
    #: has diverged (it holds a change the server refused, or skipped part of its history).
    out_of_sync: bool = False

    @property
    def accepted(self) -> bool:
        return not self.reasons


ACCEPTED = Verdict()


class Guard(PinRules):
    """Owns one room's document and judges every client update to it."""

    def __init__(
        self, accepted: Callable[[], bytes], *, native_events_enabled: bool = True
    ) -> None:
        #: Reads the whole state of every change accepted so far (the log's bytes), to
        #: rebuild the document from after a refusal.
        self._accepted = accepted
        #: Called once :attr:`doc` has been replaced, after a refusal.
        self.on_reset: Callable[[], None] | None = None
        self._native = native_events_enabled and native_events.AVAILABLE
        self._actor: Identity | None = None
        self._violations: list[str] = []
        self._touched: list[str] = []
        #: Each pin's author (it never changes), so an edit's check reads no pin map.
        self._authors: dict[str, Any] = {}
        #: The ids of every array in the document (threads): an item may not be placed in
        #: one by key, which would hide it from every reader.
        self._arrays: set[ID] = set()
        #: What the update under review changed in ``_authors`` (pin id, value before).
        self._journal: list[tuple[str, Any]] = []
        #: Who owns each client id: a user id, or :data:`SERVER_OWNER`.
        self._owners: dict[int, str] = {}
        #: Owners found by the last accepted update or server write, for the room to store
        #: with it (:meth:`take_claims`).
        self._claims: list[tuple[int, str]] = []
        #: Told which pins appeared, disappeared or changed a listened field, after an
        #: accepted client update or a server write.
        self.on_pins_touched: Callable[[list[str]], None] | None = None
        self._reset(b"")

    @property
    def native_events(self) -> bool:
        """Whether the observers take pycrdt's native events (the fast path)."""
        return self._native

    # -- the document ----------------------------------------------------------------------

    def load(
        self,
        state: bytes,
        arrays: set[ID] | None = None,
        owners: dict[int, str] | None = None,
    ) -> None:
        """Start from the room's whole document (after the room loaded it).

        ``arrays`` are the ids of the arrays it holds (:func:`arrays_in`); read here when
        not given. ``owners``: who owns each client id, as stored with the log.
        """
        self._reset(state)
        self._owners = dict(owners or {})
        self._claims = []
        self._arrays = arrays_in(state) if arrays is None else arrays
        self._authors = {}
        pins: Map[Any] = self._roots[schema.PINS]  # type: ignore[assignment]
        with self._doc.transaction():
            for pin_id, pin in pins.items():
                self._authors[pin_id] = pin.get(Pin.AUTHOR) if isinstance(pin, Map) else NO_AUTHOR

    def _reset(self, state: bytes) -> None:
        """A document holding ``state``, observed from then on (nothing fires for ``state``).

        The observers subscribe after the state is in: converting the events of a whole
        document cost more than the rest of a rebuild (scripts/bench_guard.py).
        """
        self._doc, self._roots = new_document()
        self._meta: Map[Any] = self._roots[schema.META]  # type: ignore[assignment]
        self._revisions: Array[Any] = self._roots[schema.REVISIONS]  # type: ignore[assignment]
        if state:
            self._doc.apply_update(state)
        #: The document's state vector: client id -> next clock.
        self._clocks: dict[int, int] = codec.decode_state_vector(self._doc.get_state())
        self._subscriptions = [self._observe(name, root) for name, root in self._roots.items()]

    def _observe(self, name: str, root: Map[Any] | Array[Any]) -> Any:
        observer = self._make_observer(name)
        if self._native:
            return native_events.observe_deep_native(root, observer)
        return root.observe_deep(observer)

    @property
    def doc(self) -> Doc[Any]:
        """The room's live document (a new object after each refusal that touched it)."""
        return self._doc

    @property
    def roots(self) -> dict[str, Map[Any] | Array[Any]]:
        return self._roots

    def absorb(self, update: bytes) -> None:
        """Take note of a change the server made to :attr:`doc` itself (a server write)."""
        shape = read_update(update)
        for client, (_start, end) in shape.ranges.items():
            if end > self._clocks.get(client, 0) and client not in self._owners:
                self._owners[client] = SERVER_OWNER
                self._claims.append((client, SERVER_OWNER))
        self._absorb(shape)
        self._flush_touched()

    def take_claims(self) -> list[tuple[int, str]]:
        """Client ids first written with since the last call, and by whom (to store)."""
        claims, self._claims = self._claims, []
        return claims

    def _absorb(self, shape: UpdateShape) -> None:
        clocks = self._clocks
        for client, (_start, end) in shape.ranges.items():
            known = clocks.get(client, 0)
            if end > known:
                clocks[client] = end
                for (c, clock), kind in shape.types.items():
                    if kind == TYPE_ARRAY and c == client and clock >= known:
                        self._arrays.add((c, clock))

    def _flush_touched(self) -> None:
        touched, self._touched = self._touched, []
        if touched and self.on_pins_touched is not None:
            self.on_pins_touched(touched)

    def adds_content(self, update: bytes) -> bool:
        """Whether ``update`` carries anything the document does not hold yet."""
        try:
            shape = read_update(update)
        except MalformedMessage:
            return True
        return any(end > self._clocks.get(c, 0) for c, (_, end) in shape.ranges.items())

    # -- judging --------------------------------------------------------------------------

    def check(self, update: bytes, actor: Identity) -> Verdict:
        """Judge a writer's update and apply it to :attr:`doc` if it is accepted.

        Raises MalformedMessage for bytes that are not an update (nothing is applied then).
        """
        shape = read_update(update)
        verdict = self._check_shape(shape)
        if not verdict.accepted:
            return verdict
        claims: list[int] = []
        owners = self._owners
        for client, (_start, end) in shape.ranges.items():
            if end <= self._clocks.get(client, 0):
                continue  # nothing new under this id: a resend of what the server holds
            owner = owners.get(client)
            if owner is None:
                claims.append(client)
            elif owner != actor.user_id:
                return Verdict(
                    (
                        f"it writes under another participant's client id ({client});"
                        " reload the document",
                    ),
                    out_of_sync=True,
                )
        self._actor = actor
        self._violations = []
        self._touched = []
        self._journal = []
        try:
            self._doc.apply_update(update)
        except Exception as exc:  # pycrdt refused it
            logger.warning("an update passed the shape check but not pycrdt: %r", exc)
            self._violations.append("the update could not be applied")
        finally:
            self._actor = None
        if self._violations:
            self._touched = []
            for pin_id, author in reversed(self._journal):
                if author is _ABSENT:
                    self._authors.pop(pin_id, None)
                else:
                    self._authors[pin_id] = author
            # The document holds the refused change now: start again from what was accepted.
            self._reset(self._accepted())
            if self.on_reset is not None:
                self.on_reset()
            return Verdict(tuple(dict.fromkeys(self._violations)))
        for client in claims:
            owners[client] = actor.user_id
            self._claims.append((client, actor.user_id))
        self._absorb(shape)
        self._flush_touched()
        return ACCEPTED

    def _check_shape(self, shape: UpdateShape) -> Verdict:
        clocks = self._clocks
        ends: dict[int, int] = {}
        for client, (start, end) in shape.ranges.items():
            known = clocks.get(client, 0)
            if start > known:
                return _diverged("it skips part of its writer's history")
            ends[client] = max(known, end)

        def held(client: int, clock: int) -> bool:
            return clock < ends.get(client, clocks.get(client, 0))

        for client, clock in shape.refs:
            if not held(client, clock):
                return _diverged("it builds on content the server does not hold")
        for client, clock, length in shape.deletes:
            if not held(client, clock + length - 1):
                return _diverged("it deletes content the server does not hold")
        reasons: list[str] = []
        for write in shape.roots:
            if write.root not in schema.ROOTS:
                reasons.append(f"unknown document root {write.root!r}")
            elif write.root in schema.SERVER_ROOTS:
                reasons.append(f"'{write.root}' is written by the server only")
            elif (write.key is None) == (write.root in schema.MAP_ROOTS):
                kind = "map" if write.root in schema.MAP_ROOTS else "array"
                reasons.append(f"'{write.root}' is a {kind} and can only be written as one")
        for nested in shape.nested:
            if nested.key is not None and (
                nested.parent in self._arrays or shape.types.get(nested.parent) == TYPE_ARRAY
            ):
                reasons.append("an array written as a map")
        if shape.unsupported:
            reasons.append(f"only maps and arrays are allowed, not {sorted(shape.unsupported)}")
        return Verdict(tuple(dict.fromkeys(reasons))) if reasons else ACCEPTED

    # -- observers ------------------------------------------------------------------------

    def _make_observer(self, root: str) -> Callable[[list[Any]], None]:
        if root != schema.PINS:

            def server_root(events: list[Any]) -> None:
                # Only a client's update is under review while an actor is set.
                if self._actor is not None:
                    self._deny(f"'{root}' is written by the server only")

            return server_root

        if not self._native:
            return self._typed_pin_events

        def pins(events: list[Any]) -> None:
            try:
                if self._pin_field_edits(events):
                    return
            except Exception as exc:  # let the typed path judge (and report) it
                logger.debug("native pin events fell back to typed ones: %r", exc)
            native_events.typed(self._typed_pin_events, self._doc, events)

        return pins

    def _pin_field_edits(self, events: list[Any]) -> bool:
        """Handle edits of existing pins' plain fields from native events; False otherwise."""
        actor = self._actor
        touched: list[str] = []
        checks: list[tuple[Any, dict[str, Any]]] = []
        for native in events:
            if not native_events.is_native_map_event(native):
                return False
            path = native.path
            if len(path) != 1:
                return False
            keys = native.keys
            if not keys:
                return False
            for change in keys.values():
                if not isinstance(change.get("newValue"), _PLAIN):
                    return False
            pin_id = path[0]
            if not REVISION_BOUND.isdisjoint(keys) and len(self._revisions):
                return False  # checked against the pin's revision, on the typed path
            if actor is not None:
                author = self._authors.get(pin_id, NO_AUTHOR)
                if author is NO_AUTHOR:
                    return False
                checks.append((author, keys))
            if not LISTENED_PIN_FIELDS.isdisjoint(keys):
                touched.append(str(pin_id))
        self._note_touched(touched)
        if actor is not None:
            for author, keys in checks:
                self._check_pin_keys(author, keys, actor)
        return True

    def _note_touched(self, pin_ids: list[str]) -> None:
        if pin_ids:
            self._touched.extend(pin_ids)

    def _typed_pin_events(self, events: list[Any]) -> None:
        self._note_authors(events)
        touched: list[str] = []
        for event in events:
            path = event.path
            if not path:
                touched.extend(str(key) for key in event.keys)
            elif len(path) == 1 and not LISTENED_PIN_FIELDS.isdisjoint(event.keys):
                touched.append(str(path[0]))
        self._note_touched(touched)
        actor = self._actor
        if actor is None:
            return
        try:
            for event in events:
                self._check_pin_event(event, actor)
        except Exception as exc:  # a malformed structure must never crash the room
            logger.warning("guard refused an update it could not inspect: %r", exc)
            self._violations.append("malformed change")

    def _note_authors(self, events: list[Any]) -> None:
        for event in events:
            if event.path:
                continue
            for pin_id, change in event.keys.items():
                if self._actor is not None:  # under review: undone if refused
                    self._journal.append((pin_id, self._authors.get(pin_id, _ABSENT)))
                value = change.get("newValue")
                if change["action"] == "delete":
                    self._authors.pop(pin_id, None)
                else:
                    self._authors[pin_id] = (
                        value.get(Pin.AUTHOR) if isinstance(value, Map) else NO_AUTHOR
                    )

    def _deny(self, reason: str) -> None:
        self._violations.append(reason)


def arrays_in(state: bytes) -> set[ID]:
    """The ids of the arrays a document state holds (pure Python: run it off the loop)."""
    return {item for item, kind in read_update(state).types.items() if kind == TYPE_ARRAY}


def _diverged(why: str) -> Verdict:
    return Verdict((f"out of sync: {why}; reload the document",), out_of_sync=True)
