"""The write guard (DESIGN.md section 4).

A writer's update is applied inside a transaction whose origin marks it as under review.
Deep observers on every root record what the transaction changed; if any change is not
allowed for the writer's role and identity, an undo manager that tracks only that origin
reverts the whole update in the same tick, and the caller answers permission denied.
Reverting (rather than dropping) keeps the client's update history intact, so a Yjs client
never stalls waiting for a missing update.

The observers take pycrdt's native events. Most traffic is a writer editing fields of a
pin (text, position, status): those are checked straight from the native event's path and
keys, against the pin authors the guard remembers. Anything else (new pins, threads,
comments, values that are shared types) goes through pycrdt's typed events. The typed
conversion of every event cost more than the rest of the check (sync benchmark).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from pycrdt import Array, ArrayEvent, Doc, Map, MapEvent, Transaction, UndoManager

# pycrdt is pinned below 0.15: its native event type and its own typed conversion.
from pycrdt._base import observe_deep_callback
from pycrdt._pycrdt import MapEvent as NativeMapEvent

from ...shared import schema
from ...shared.enums import PIN_TRANSITIONS, PinStatus, can_transition
from ...shared.schema import Comment, Pin
from ..identity import Identity
from ..store.blobs import is_blob_id

logger = logging.getLogger(__name__)


class _Origin:
    """Transaction origin of an update under review (compared by identity)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<guarded client update>"


GUARDED = _Origin()
_NO_AUTHOR = object()
#: pycrdt's native map event (its stubs do not declare the attributes read here).
_NATIVE_MAP_EVENT: Any = NativeMapEvent
#: Values a native event carries as plain Python (anything else is a shared type).
_PLAIN = (str, int, float, bool, type(None), list, dict)
#: The pin fields whose changes :attr:`Guard.on_pins_touched` reports.
LISTENED_PIN_FIELDS = frozenset((Pin.STATUS, Pin.AUTHOR, Pin.CREATED_AT))


class Guard:
    """Checks and, where needed, reverts client updates on one document."""

    def __init__(
        self, doc: Doc[Any], roots: dict[str, Map[Any] | Array[Any]], meta: Map[Any]
    ) -> None:
        self._doc = doc
        self._meta = meta
        self._actor: Identity | None = None
        self._violations: list[str] = []
        self._undo = UndoManager(scopes=list(roots.values()), capture_timeout_millis=0)
        self._undo.include_origin(GUARDED)
        self._known_roots = set(roots)
        #: Each pin's author (it never changes), so an edit's check reads no pin map.
        self._authors: dict[str, Any] = {}
        #: Told which pins appeared, disappeared or changed a listened field, after every
        #: transaction on ``pins`` (any origin).
        self.on_pins_touched: Callable[[list[str]], None] | None = None
        # Keep the subscriptions (and the roots) referenced for the guard's lifetime.
        self._roots = roots
        self._subscriptions = [
            root.integrated.observe_deep(self._make_observer(name)) for name, root in roots.items()
        ]

    def apply(self, update: bytes, actor: Identity) -> list[str]:
        """Apply a writer's update; return why it must be reverted (empty if accepted).

        Call :meth:`settle` next, in the same tick. Raises ValueError for an update that
        cannot be decoded (nothing is applied then).
        """
        self._actor = actor
        self._violations = []
        try:
            with self._doc.transaction(origin=GUARDED) as txn:
                self._doc.apply_update(update)
                names = _root_names(self._doc, txn)
        finally:
            self._actor = None
        unknown = names - self._known_roots
        if unknown:
            self._known_roots |= unknown
            self._violations.append(f"unknown document roots: {sorted(unknown)}")
        return self._violations

    def settle(self, revert: bool) -> None:
        """Revert the last applied update (or keep it) and forget it."""
        try:
            if revert:
                self._undo.undo()
        finally:
            self._undo.clear()

    # -- observers ------------------------------------------------------------------------

    def _make_observer(self, root: str) -> Callable[[list[Any]], None]:
        if root != schema.PINS:

            def server_root(events: list[Any]) -> None:
                # Only a guarded transaction is under review while an actor is set.
                if self._actor is not None:
                    self._deny(f"'{root}' is written by the server only")

            return server_root

        def pins(events: list[Any]) -> None:
            try:
                if self._pin_field_edits(events):
                    return
            except Exception as exc:  # let the typed path judge (and report) it
                logger.debug("native pin events fell back to typed ones: %r", exc)
            observe_deep_callback(self._typed_pin_events, self._doc, 1, events)

        return pins

    def _pin_field_edits(self, events: list[Any]) -> bool:
        """Handle edits of existing pins' plain fields from native events; False otherwise."""
        actor = self._actor
        touched: list[str] = []
        checks: list[tuple[Any, dict[str, Any]]] = []
        for native in events:
            if type(native) is not _NATIVE_MAP_EVENT:
                return False
            path = native.path
            if len(path) != 1:
                return False
            keys = native.keys
            for change in keys.values():
                if not isinstance(change.get("newValue"), _PLAIN):
                    return False
            pin_id = path[0]
            if actor is not None:
                author = self._authors.get(pin_id, _NO_AUTHOR)
                if author is _NO_AUTHOR:
                    return False
                checks.append((author, keys))
            if not LISTENED_PIN_FIELDS.isdisjoint(keys):
                touched.append(str(pin_id))
        if touched and self.on_pins_touched is not None:
            self.on_pins_touched(touched)
        if actor is not None:
            for author, keys in checks:
                self._check_pin_keys(author, keys, actor)
        return True

    def _typed_pin_events(self, events: list[Any]) -> None:
        self._note_authors(events)
        if self.on_pins_touched is not None:
            touched: list[str] = []
            for event in events:
                path = event.path
                if not path:
                    touched.extend(str(key) for key in event.keys)
                elif len(path) == 1 and not LISTENED_PIN_FIELDS.isdisjoint(event.keys):
                    touched.append(str(path[0]))
            if touched:
                self.on_pins_touched(touched)
        actor = self._actor
        if actor is None:
            return
        try:
            for event in events:
                self._check_pin_event(event, actor)
        except Exception as exc:  # a malformed structure must never crash the room
            logger.warning("guard rejected an update it could not inspect: %r", exc)
            self._violations.append("malformed change")

    def _note_authors(self, events: list[Any]) -> None:
        for event in events:
            if event.path:
                continue
            for pin_id, change in event.keys.items():
                value = change.get("newValue")
                if change["action"] == "delete":
                    self._authors.pop(pin_id, None)
                else:
                    self._authors[pin_id] = (
                        value.get(Pin.AUTHOR) if isinstance(value, Map) else _NO_AUTHOR
                    )

    def _deny(self, reason: str) -> None:
        self._violations.append(reason)

    def _check_pin_event(self, event: Any, actor: Identity) -> None:
        path = list(event.path)
        is_map = isinstance(event, MapEvent)  # kept as a flag: pycrdt's events are untyped
        if not path and is_map:
            for pin_id, change in event.keys.items():
                if change["action"] != "add":
                    self._deny("pins are resolved, never replaced or deleted")
                else:
                    self._check_new_pin(pin_id, change["newValue"], actor)
        elif len(path) == 1 and is_map:
            self._check_pin_edit(event, actor)
        elif len(path) == 2 and path[1] == Pin.THREAD and isinstance(event, ArrayEvent):
            self._check_thread_change(event, actor)
        elif len(path) == 3 and path[1] == Pin.THREAD and is_map:
            self._check_comment_edit(event, actor)
        else:
            self._deny(f"change at an unexpected place in a pin: {path}")

    # -- pins -----------------------------------------------------------------------------

    def _check_new_pin(self, pin_id: str, value: Any, actor: Identity) -> None:
        if not isinstance(value, Map):
            self._deny("a pin must be a map")
            return
        if not 0 < len(pin_id) <= schema.MAX_ID_CHARS:
            self._deny("invalid pin id")
        fields = dict(value.items())
        missing = Pin.REQUIRED - fields.keys()
        extra = fields.keys() - Pin.CREATABLE
        if missing:
            self._deny(f"a new pin needs {sorted(missing)}")
        if extra:
            self._deny(f"a new pin may not set {sorted(extra)}")
        if fields.get(Pin.AUTHOR) != actor.user_id:
            self._deny("a pin's author must be its writer")
        if fields.get(Pin.STATUS) != PinStatus.OPEN.value:
            self._deny("a new pin must be open")
        for key in (Pin.X, Pin.Y, Pin.TEXT, Pin.CREATED_AT, Pin.UPDATED_AT, Pin.REGION, Pin.MASK):
            if key in fields:
                self._check_pin_value(key, fields[key])
        thread = fields.get(Pin.THREAD)
        if not isinstance(thread, Array):
            self._deny("a pin's thread must be an array")
        else:
            for comment in thread:
                self._check_new_comment(comment, actor)

    def _check_pin_edit(self, event: Any, actor: Identity) -> None:
        author = self._authors.get(event.path[0], _NO_AUTHOR)
        if author is _NO_AUTHOR:
            author = event.target.get(Pin.AUTHOR)
        self._check_pin_keys(author, event.keys, actor)

    def _check_pin_keys(self, author: Any, keys: dict[str, Any], actor: Identity) -> None:
        if author != actor.user_id:
            self._deny("only a pin's author may change it")
            return
        for key, change in keys.items():
            if key not in Pin.AUTHOR_EDITABLE:
                self._deny(f"'{key}' of a pin cannot be changed")
            elif change["action"] == "delete":
                if key in Pin.REQUIRED:
                    self._deny(f"'{key}' of a pin cannot be removed")
            elif key == Pin.STATUS:
                self._check_status(change.get("oldValue"), change.get("newValue"))
            else:
                self._check_pin_value(key, change.get("newValue"))

    def _check_status(self, old: Any, new: Any) -> None:
        try:
            old_status, new_status = PinStatus(old), PinStatus(new)
        except ValueError:
            self._deny(f"invalid pin status {new!r}")
            return
        if not can_transition(PIN_TRANSITIONS, old_status, new_status):
            self._deny(f"a pin cannot go from {old} to {new}")

    def _check_pin_value(self, key: str, value: Any) -> None:
        if key in (Pin.X, Pin.Y):
            limit = self._meta.get(schema.Meta.WIDTH if key == Pin.X else schema.Meta.HEIGHT)
            if not _is_number(value) or value < 0 or (_is_number(limit) and value > limit):
                self._deny(f"pin '{key}' must be a pixel coordinate inside the image")
        elif key == Pin.TEXT:
            self._check_text(value)
        elif key in (Pin.CREATED_AT, Pin.UPDATED_AT):
            if not _is_number(value):
                self._deny(f"'{key}' must be a time in seconds")
        elif key == Pin.REGION:
            if value is not None and not _is_box(value):
                self._deny("a region must be [x, y, w, h] with w, h > 0")
        elif key == Pin.MASK and value is not None and not is_blob_id(value):
            self._deny("a mask must be a blob id")

    def _check_text(self, value: Any) -> None:
        if not isinstance(value, str) or len(value) > schema.MAX_TEXT_CHARS:
            self._deny(f"text must be a string of at most {schema.MAX_TEXT_CHARS} characters")

    # -- threads --------------------------------------------------------------------------

    def _check_thread_change(self, event: Any, actor: Identity) -> None:
        for op in event.delta:
            if "delete" in op:
                self._deny("comments are never removed; mark your own as deleted")
            for comment in op.get("insert", ()):
                self._check_new_comment(comment, actor)

    def _check_new_comment(self, comment: Any, actor: Identity) -> None:
        if not isinstance(comment, Map):
            self._deny("a comment must be a map")
            return
        fields = dict(comment.items())
        if Comment.REQUIRED - fields.keys() or fields.keys() - Comment.CREATABLE:
            self._deny(f"a comment has exactly the fields {sorted(Comment.CREATABLE)}")
        if fields.get(Comment.AUTHOR) != actor.user_id:
            self._deny("a comment's author must be its writer")
        cid = fields.get(Comment.ID)
        if not isinstance(cid, str) or not 0 < len(cid) <= schema.MAX_ID_CHARS:
            self._deny("invalid comment id")
        self._check_text(fields.get(Comment.TEXT))
        if not _is_number(fields.get(Comment.AT)):
            self._deny("a comment's 'at' must be a time in seconds")

    def _check_comment_edit(self, event: Any, actor: Identity) -> None:
        if event.target.get(Comment.AUTHOR) != actor.user_id:
            self._deny("only a comment's author may change it")
            return
        for key, change in event.keys.items():
            new = change.get("newValue")
            if key not in Comment.AUTHOR_EDITABLE or change["action"] == "delete":
                self._deny(f"'{key}' of a comment cannot be changed")
            elif key == Comment.TEXT:
                self._check_text(new)
            elif key == Comment.DELETED and not isinstance(new, bool):
                self._deny("'deleted' must be true or false")
            elif key == Comment.EDITED_AT and not _is_number(new):
                self._deny("'edited_at' must be a time in seconds")


def _root_names(doc: Doc[Any], txn: Transaction) -> set[str]:
    """The names of the document's roots, read in ``txn``.

    ``Doc.keys()`` wraps every root in a Python object first, which cost more than the rest
    of the check per update; the native call (pycrdt is pinned below 0.15) lists the names.
    """
    native_doc: Any = doc._doc
    native_txn: Any = txn._txn
    return set(native_doc.roots(native_txn))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(_is_number(v) for v in value)
        and value[2] > 0
        and value[3] > 0
    )
