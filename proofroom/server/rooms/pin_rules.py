"""The rules a client's change to ``pins`` must follow (DESIGN.md section 5, docs/protocol.md).

:class:`PinRules` judges pycrdt's typed events of one change against the writer's identity
and the pin authors the guard remembers; :class:`.guard.Guard` runs it on its replica and
collects the reasons.
"""

from __future__ import annotations

import math
from typing import Any

from pycrdt import Array, ArrayEvent, Map, MapEvent

from ...shared import schema
from ...shared.enums import PIN_TRANSITIONS, PinStatus, RevisionMedia, can_transition
from ...shared.schema import Comment, Pin, Revision
from ..identity import Identity
from ..store.blobs import is_blob_id

#: A pin's entry in :attr:`PinRules._authors` when its value is not a map.
NO_AUTHOR = object()
_PIN_STATUSES = frozenset(status.value for status in PinStatus)
#: A pin's revision when it names none (the original, ``v1``).
_ORIGINAL = object()
#: The pin fields whose check depends on the revision the pin is on.
REVISION_BOUND = frozenset({Pin.X, Pin.Y, Pin.FRAME, Pin.FRAMES})


class PinRules:
    """Checks of one change under ``pins``; a refusal goes to :meth:`_deny`."""

    _meta: Map[Any]
    #: The server-written stack of revisions (empty for a session with only its original).
    _revisions: Array[Any]
    #: Each pin's author (it never changes), so an edit's check reads no pin map.
    _authors: dict[str, Any]

    def _deny(self, reason: str) -> None:
        raise NotImplementedError

    def _check_pin_event(self, event: Any, actor: Identity) -> None:
        path = list(event.path)
        is_map = isinstance(event, MapEvent)  # kept as a flag: pycrdt's events are untyped
        if is_map and not event.keys:
            # Items placed in a map's sequence: no reader would ever see them.
            self._deny("a map written as an array")
            return
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
        # A pin made and resolved while offline arrives resolved, in one update.
        if fields.get(Pin.STATUS) not in _PIN_STATUSES:
            self._deny(f"a pin's status is one of {sorted(_PIN_STATUSES)}")
        revision = self._revision_of(fields.get(Pin.REVISION, _ORIGINAL), Pin.REVISION in fields)
        for key in (Pin.X, Pin.Y, Pin.TEXT, Pin.CREATED_AT, Pin.UPDATED_AT, Pin.REGION, Pin.MASK):
            if key in fields:
                self._check_pin_value(key, fields[key], revision)
        for key in (Pin.FRAME, Pin.FRAMES):
            if key in fields:
                self._check_frame_value(key, fields[key], revision)
        thread = fields.get(Pin.THREAD)
        if not isinstance(thread, Array):
            self._deny("a pin's thread must be an array")
        else:
            for comment in thread:
                self._check_new_comment(comment, actor)

    def _check_pin_edit(self, event: Any, actor: Identity) -> None:
        author = self._authors.get(event.path[0], NO_AUTHOR)
        if author is NO_AUTHOR:
            author = event.target.get(Pin.AUTHOR)
        revision: Any = _ORIGINAL
        if any(key in REVISION_BOUND for key in event.keys):
            revision = self._revision_of(event.target.get(Pin.REVISION, _ORIGINAL), False)
        self._check_pin_keys(author, event.keys, actor, revision)

    def _revision_of(self, revision_id: Any, named: bool) -> Any:
        """The revision map a pin is on; ``_ORIGINAL`` for the original (or when the pin
        names one that the guard already refused)."""
        if revision_id == _ORIGINAL or revision_id == schema.ORIGINAL_REVISION:
            return _ORIGINAL
        if not isinstance(revision_id, str):
            self._deny("a pin's revision must be a revision id")
            return _ORIGINAL
        for entry in self._revisions:
            if isinstance(entry, Map) and entry.get(Revision.ID) == revision_id:
                return entry
        if named:
            self._deny(f"no revision {revision_id!r} in this session")
        return _ORIGINAL

    def _check_frame_value(self, key: str, value: Any, revision: Any) -> None:
        frames = None
        if revision is not _ORIGINAL and revision.get(Revision.MEDIA) == RevisionMedia.VIDEO:
            frames = revision.get(Revision.FRAMES)
        if value is None and key == Pin.FRAMES:
            return
        if not _is_number(frames):
            self._deny(f"'{key}' is for pins on a clip; this pin is on a still")
            return
        assert isinstance(frames, int | float)
        count = int(frames)
        if key == Pin.FRAME:
            if not _is_frame(value, count):
                self._deny(f"'frame' must be a whole frame number from 0 to {count - 1}")
        elif not (
            isinstance(value, list)
            and len(value) == 2
            and all(_is_frame(v, count) for v in value)
            and value[0] <= value[1]
        ):
            self._deny(f"'frames' must be [first, last] frame numbers from 0 to {count - 1}")

    def _check_pin_keys(
        self, author: Any, keys: dict[str, Any], actor: Identity, revision: Any = None
    ) -> None:
        revision = _ORIGINAL if revision is None else revision
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
            elif key in (Pin.FRAME, Pin.FRAMES):
                self._check_frame_value(key, change.get("newValue"), revision)
            else:
                self._check_pin_value(key, change.get("newValue"), revision)

    def _check_status(self, old: Any, new: Any) -> None:
        try:
            old_status, new_status = PinStatus(old), PinStatus(new)
        except ValueError:
            self._deny(f"invalid pin status {new!r}")
            return
        if not can_transition(PIN_TRANSITIONS, old_status, new_status):
            self._deny(f"a pin cannot go from {old} to {new}")

    def _check_pin_value(self, key: str, value: Any, revision: Any = None) -> None:
        if key in (Pin.X, Pin.Y):
            if revision is None or revision is _ORIGINAL:
                limit = self._meta.get(schema.Meta.WIDTH if key == Pin.X else schema.Meta.HEIGHT)
            else:
                limit = revision.get(Revision.WIDTH if key == Pin.X else Revision.HEIGHT)
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
        if Comment.EDITED_AT in fields and not _is_number(fields[Comment.EDITED_AT]):
            self._deny("'edited_at' must be a time in seconds")
        if Comment.DELETED in fields and not isinstance(fields[Comment.DELETED], bool):
            self._deny("'deleted' must be true or false")

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


def _is_frame(value: Any, count: int) -> bool:
    return _is_number(value) and float(value).is_integer() and 0 <= value < count


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
