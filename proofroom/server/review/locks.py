"""Locked regions ("don't touch the logo"): the pixels no version may change.

Locks bind every version, however it was made. A fix has the locks subtracted from its mask
when it is requested; an uploaded version that changes a locked pixel is refused, naming
the locks; and since a layer can predate a lock (a fix queued before the owner locked the
region, a version uploaded before), a layer whose patch covers a locked pixel cannot be
approved, and is left out of an export if it was approved after the locks were set.

Covering is judged on the patch's alpha: alpha 0 keeps the picture's pixel, so a patch
that is transparent over every lock cannot change a locked pixel, whatever lies beneath.
The layers approved when the locks were set are the picture they froze: those may cover
a lock (the logo fix approved, then locked), and approving one of them again is allowed.
Which ones they were is recorded in the ``session.locks`` audit row, committed with the
locks themselves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import numpy as np
from pycrdt import Array, Map

from ...shared import schema
from ...shared.enums import LayerState
from ...shared.errors import Conflict
from ..rooms import Room
from ..store.blobs import BlobStore
from ..store.db import Database
from .flatten import decode_patch

Box = tuple[int, int, int, int]

#: The key of the ``session.locks`` audit detail that lists the layers approved then.
FROZEN = "frozen"


def current_locks(room: Room) -> list[Box]:
    """The session's locked regions as whole-pixel [x, y, w, h] boxes."""
    locks = room.meta.get(schema.Meta.LOCKS)
    if not isinstance(locks, Array | list):
        return []
    boxes = []
    for lock in list(locks):
        x, y, w, h = (round(v) for v in lock)
        boxes.append((x, y, w, h))
    return boxes


def approved_layers(room: Room) -> list[str]:
    """Ids of the layers approved now, in document order."""
    return [
        str(lay.get(schema.Layer.ID))
        for lay in room.layers
        if isinstance(lay, Map) and lay.get(schema.Layer.STATE) == LayerState.APPROVED.value
    ]


async def frozen_layers(db: Database, session_id: str) -> set[str]:
    """The layers that were approved when the session's locks were last set."""
    row = await db.fetchone(
        "SELECT detail FROM audit WHERE session_id = ? AND action = 'session.locks'"
        " ORDER BY id DESC LIMIT 1",
        (session_id,),
    )
    if row is None:
        return set()
    frozen = json.loads(row["detail"]).get(FROZEN)
    return {str(layer_id) for layer_id in frozen} if isinstance(frozen, list) else set()


def lock_mask(locks: Sequence[Box], width: int, height: int) -> np.ndarray:
    """HxW bool, true on every locked pixel."""
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in locks:
        mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = True
    return mask


def _overlap(a: Sequence[int], b: Sequence[int]) -> Box | None:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def locks_covered(alpha: np.ndarray, origin: Sequence[int], locks: Sequence[Box]) -> list[Box]:
    """The locks on which ``alpha`` (a patch's, placed at ``origin`` = x, y) is non-zero."""
    bx, by = int(origin[0]), int(origin[1])
    touched = []
    for lock in locks:
        part = _overlap((bx, by, alpha.shape[1], alpha.shape[0]), lock)
        if part is None:
            continue
        x, y, w, h = part
        if alpha[y - by : y - by + h, x - bx : x - bx + w].any():
            touched.append(lock)
    return touched


def could_cover(box: Sequence[float], locks: Sequence[Box]) -> bool:
    """Whether a patch at ``box`` overlaps any lock at all (cheap: no decoding)."""
    whole = tuple(round(v) for v in box)
    return any(_overlap(whole, lock) is not None for lock in locks)


async def layer_covers(blobs: BlobStore, layer: dict[str, Any], locks: Sequence[Box]) -> list[Box]:
    """The locks a layer's patch covers; the patch is decoded only when its box overlaps one."""
    box = [round(v) for v in layer[schema.Layer.BOX]]
    if not could_cover(box, locks):
        return []
    data = await blobs.get(layer[schema.Layer.PATCH])

    def check() -> list[Box]:
        return locks_covered(decode_patch(data)[..., 3], box[:2], locks)

    return await anyio.to_thread.run_sync(check)


def describe(locks: Sequence[Box]) -> str:
    """Locks as a reader wants them in a message: ``[x, y, w, h], ...``."""
    return ", ".join(f"[{x}, {y}, {w}, {h}]" for x, y, w, h in locks)


def require_unchanged(room: Room, checked: Sequence[Box]) -> None:
    """Inside a server write: the locks are still those a check ran against."""
    if current_locks(room) != list(checked):
        raise Conflict("the locked regions changed meanwhile; try again")
