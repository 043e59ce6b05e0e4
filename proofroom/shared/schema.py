"""Root and field names of a session's CRDT document (DESIGN.md section 3)."""

from __future__ import annotations

from typing import Final

# Roots.
META: Final = "meta"
PINS: Final = "pins"
LAYERS: Final = "layers"
JOBS: Final = "jobs"
#: The session's stack of whole pictures (v2): the original, upscales, clips.
REVISIONS: Final = "revisions"

#: Roots only the server may write.
SERVER_ROOTS: Final = frozenset({META, LAYERS, JOBS, REVISIONS})
#: Roots clients may write, under the write guard.
CLIENT_ROOTS: Final = frozenset({PINS})
ROOTS: Final = SERVER_ROOTS | CLIENT_ROOTS
#: Roots that are maps (keyed entries); the others are arrays.
MAP_ROOTS: Final = frozenset({META, PINS, JOBS})
ARRAY_ROOTS: Final = frozenset({LAYERS, REVISIONS})


class Meta:
    """Fields of the ``meta`` map."""

    TITLE: Final = "title"
    WIDTH: Final = "width"
    HEIGHT: Final = "height"
    BASE: Final = "base"
    CREATED_AT: Final = "created_at"
    LOCKS: Final = "locks"


class Pin:
    """Fields of one pin map in ``pins``."""

    X: Final = "x"
    Y: Final = "y"
    AUTHOR: Final = "author"
    TEXT: Final = "text"
    STATUS: Final = "status"
    CREATED_AT: Final = "created_at"
    UPDATED_AT: Final = "updated_at"
    THREAD: Final = "thread"
    REGION: Final = "region"
    MASK: Final = "mask"
    #: The revision the pin is on (a revision id; absent: the original, ``v1``).
    REVISION: Final = "revision"
    #: On a clip: the frame the pin is on (0 <= frame < the clip's frames).
    FRAME: Final = "frame"
    #: On a clip, optionally: the range of frames it is about, [first, last] inclusive.
    FRAMES: Final = "frames"
    #: Server-written links to the jobs and layers made from this pin.
    JOBS: Final = "jobs"
    LAYERS: Final = "layers"
    #: Server-written on a pin carried over to a new revision: the pin it copies.
    CARRIED_FROM: Final = "carried_from"

    #: Fields the pin's author may change after creating it.
    AUTHOR_EDITABLE: Final = frozenset(
        {X, Y, TEXT, STATUS, UPDATED_AT, REGION, MASK, FRAME, FRAMES}
    )
    #: Fields only the server writes.
    SERVER_ONLY: Final = frozenset({JOBS, LAYERS, CARRIED_FROM})
    #: Fields a new pin must carry.
    REQUIRED: Final = frozenset({X, Y, AUTHOR, TEXT, STATUS, CREATED_AT, THREAD})
    #: Fields a client may set when creating a pin.
    CREATABLE: Final = REQUIRED | {UPDATED_AT, REGION, MASK, REVISION, FRAME, FRAMES}


class Comment:
    """Fields of one comment map in a pin's ``thread``."""

    ID: Final = "id"
    AUTHOR: Final = "author"
    TEXT: Final = "text"
    AT: Final = "at"
    EDITED_AT: Final = "edited_at"
    #: A comment is never removed from the thread; its author may blank it.
    DELETED: Final = "deleted"

    AUTHOR_EDITABLE: Final = frozenset({TEXT, EDITED_AT, DELETED})
    REQUIRED: Final = frozenset({ID, AUTHOR, TEXT, AT})
    #: (A comment written and blanked while offline arrives with ``deleted`` set.)
    CREATABLE: Final = REQUIRED | {EDITED_AT, DELETED}


class Layer:
    """Fields of one layer map in ``layers``."""

    ID: Final = "id"
    PIN_ID: Final = "pin_id"
    PATCH: Final = "patch"
    BOX: Final = "box"
    PARENT: Final = "parent"
    #: The fix request (one round) that made it: its variants share it. An upload is its
    #: own round.
    FIX: Final = "fix"
    SOURCE: Final = "source"
    PARAMS: Final = "params"
    AUTHOR: Final = "author"
    CREATED_AT: Final = "created_at"
    STATE: Final = "state"
    DECISIONS: Final = "decisions"
    #: The revision the layer is on (absent: the original, ``v1``).
    REVISION: Final = "revision"


#: The id of the original (the upload): what an absent ``revision`` means.
ORIGINAL_REVISION: Final = "v1"


class Revision:
    """Fields of one revision map in ``revisions`` (v2)."""

    ID: Final = "id"
    #: A RevisionKind value: original | upscale | clip.
    KIND: Final = "kind"
    #: A RevisionMedia value: image | video.
    MEDIA: Final = "media"
    #: Blob of the picture (an image revision).
    IMAGE: Final = "image"
    #: Blobs of a clip's renditions (H.264 MP4, VP9 WebM) and its first frame (PNG).
    MP4: Final = "mp4"
    WEBM: Final = "webm"
    POSTER: Final = "poster"
    WIDTH: Final = "width"
    HEIGHT: Final = "height"
    FPS: Final = "fps"
    FRAMES: Final = "frames"
    #: What it was made from: {revision, layers (the approved layers flattened into it)}.
    SOURCE: Final = "source"
    #: The request and the engine's provenance (engine, model, factor, codec settings...).
    PARAMS: Final = "params"
    #: Which open pins of the source came along: {mode: open | none, pins: {old: new}}.
    CARRY: Final = "carry"
    AUTHOR: Final = "author"
    CREATED_AT: Final = "created_at"
    #: The job that made it (absent on the original).
    JOB: Final = "job"
    STATE: Final = "state"
    DECISIONS: Final = "decisions"


class Job:
    """Fields of one job map in ``jobs``."""

    PIN_ID: Final = "pin_id"
    #: A JobKind value ("edit").
    KIND: Final = "kind"
    #: The engine's registry name ("fill", "recolor", "gemini"...).
    ENGINE: Final = "engine"
    STATUS: Final = "status"
    STEP: Final = "step"
    TOTAL: Final = "total"
    PREVIEW: Final = "preview"
    POSITION: Final = "position"
    ERROR: Final = "error"
    LAYER: Final = "layer"
    #: The revision an upscale or animate job made (None until it is done).
    REVISION: Final = "revision"
    #: [x, y, w, h] of the mask's bounding box: where the live preview goes.
    BOX: Final = "box"
    CREATED_AT: Final = "created_at"
    STARTED_AT: Final = "started_at"
    FINISHED_AT: Final = "finished_at"


class Awareness:
    """Fields of a participant's awareness state (not persisted)."""

    USER: Final = "user"
    CURSOR: Final = "cursor"
    VIEWPORT: Final = "viewport"
    FOLLOW: Final = "follow"


#: Limits on what clients write into pins (also enforced by the guard).
MAX_TEXT_CHARS: Final = 10_000
MAX_ID_CHARS: Final = 128
