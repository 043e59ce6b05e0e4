"""Manual versions (a retouched image uploaded as a layer) and the owner's locks."""

from __future__ import annotations

import io
import secrets
import time
from functools import partial
from typing import Any

import anyio
import numpy as np
from PIL import Image
from pycrdt import Array, Map

from ...shared import schema
from ...shared.enums import LayerSource, LayerState
from ...shared.errors import BadRequest, Conflict, NotFound
from ...shared.permissions import Action
from ..bodies import parse_json
from ..identity import Identity
from ..images import downscaled_preview, normalize_image_in_thread, run_image_job
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.db import Statement
from ..store.records import Records, audit_statement
from . import events, locks
from .fixes import _approved_chain, _decode_rgb, _last_approved_layer, _pin_links, open_pin
from .flatten import flatten_layers
from .masks import parse_box

MAX_LOCKS = 64
#: Pictures whose preview blob id is remembered (the previews themselves are blobs).
MAX_PREVIEWS = 512


class Versions:
    """Uploaded versions and locks."""

    def __init__(
        self,
        records: Records,
        blobs: BlobStore,
        rooms: RoomManager,
        bus: events.EventBus,
        *,
        max_pixels: int,
    ) -> None:
        self.records = records
        self.blobs = blobs
        self.rooms = rooms
        self.bus = bus
        self.max_pixels = max_pixels
        # picture blob -> its preview's blob id ("" when the picture is small enough).
        self._previews: dict[str, str] = {}
        self._making: dict[str, anyio.Event] = {}

    async def preview(self, blob_id: str) -> str | None:
        """The blob id of a big picture's downscaled preview (made once, then cached as a
        blob); None when the picture is small enough to be its own preview."""
        while blob_id not in self._previews:
            if blob_id in self._making:  # someone is making it: one decode per picture
                await self._making[blob_id].wait()
                continue
            done = self._making[blob_id] = anyio.Event()
            try:
                data = await self.blobs.get(blob_id)
                small = await run_image_job(partial(downscaled_preview, data))
                made = "" if small is None else await self.blobs.put(small)
                if len(self._previews) >= MAX_PREVIEWS:
                    self._previews.pop(next(iter(self._previews)))  # the oldest
                self._previews[blob_id] = made
            finally:
                del self._making[blob_id]
                done.set()
        return self._previews[blob_id] or None

    async def upload(
        self,
        session_id: str,
        pin_id: str,
        image: bytes,
        box_text: str | None,
        actor: Identity,
    ) -> str:
        """Make a layer from an uploaded image: the whole picture, or a patch at ``box``."""
        actor = actor.require(session_id, Action.EDIT)
        session, room, _pin = await open_pin(self.records, self.rooms, session_id, pin_id)
        box: tuple[int, ...] | None = None
        if box_text:  # checked before the (costly) image decode
            try:
                box_value = parse_json(box_text.encode("utf-8"))
            except BadRequest:
                raise BadRequest("box must be JSON [x, y, w, h]") from None
            box = parse_box(box_value, session.width, session.height, "box")
        normalized = await normalize_image_in_thread(image, max_pixels=self.max_pixels)
        parent_id = _last_approved_layer(room)
        chain = _approved_chain(room, parent_id)
        patches = [(await self.blobs.get(lay["patch"]), lay["box"]) for lay in chain]
        base = await self.blobs.get(session.base_blob)
        if box is not None:
            if (normalized.width, normalized.height) != (box[2], box[3]):
                raise BadRequest(
                    f"the patch is {normalized.width}x{normalized.height} but the box is "
                    f"{box[2]}x{box[3]}"
                )
        elif (normalized.width, normalized.height) != (session.width, session.height):
            raise BadRequest(
                f"the upload is {normalized.width}x{normalized.height}; a whole version must "
                f"be {session.width}x{session.height} like the base, or send a box"
            )

        locked = locks.current_locks(room)

        def build() -> tuple[bytes, tuple[int, ...]]:
            parent = flatten_layers(_decode_rgb(base), patches)
            with Image.open(io.BytesIO(normalized.png)) as img:
                upload = np.asarray(img.convert("RGBA"))
            return _patch_from_upload(parent, upload, box, locked)

        patch_png, patch_box = await run_image_job(build)
        patch_id = await self.blobs.put(patch_png)
        layer_id = f"l_up_{secrets.token_hex(6)}"
        layer = {
            schema.Layer.ID: layer_id,
            schema.Layer.PIN_ID: pin_id,
            schema.Layer.PATCH: patch_id,
            schema.Layer.BOX: list(patch_box),
            schema.Layer.PARENT: parent_id,
            schema.Layer.FIX: layer_id,  # an upload is a round of its own
            schema.Layer.SOURCE: LayerSource.UPLOAD.value,
            schema.Layer.PARAMS: {"engine": "upload", "upload": len(image)},
            schema.Layer.AUTHOR: actor.user_id,
            schema.Layer.CREATED_AT: time.time(),
            schema.Layer.STATE: LayerState.PENDING.value,
        }

        def write(room: Room) -> None:
            locks.require_unchanged(room, locked)  # checked against these, off the room
            room.layers.append(Map({**layer, schema.Layer.DECISIONS: Map()}))
            _pin_links(room, pin_id, schema.Pin.LAYERS).append(layer_id)

        audit = audit_statement(
            session_id,
            actor,
            "layer.upload",
            layer_id,
            {"pin": pin_id, "box": list(patch_box), "patch": patch_id},
        )
        await room.server_write(write, lambda _: [audit])
        self.bus.publish(
            events.Event(
                events.LAYER_CREATED,
                session_id,
                {
                    "layer": layer_id,
                    "pin": pin_id,
                    "fix": layer_id,
                    "source": "upload",
                    "author": actor.user_id,
                    "at": layer[schema.Layer.CREATED_AT],
                },
            )
        )
        return layer_id

    async def set_locks(self, session_id: str, body: dict[str, Any], actor: Identity) -> list[Any]:
        """Replace the session's locked regions ("don't touch the logo")."""
        actor = actor.require(session_id, Action.ADMINISTER)
        session = await self.records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        requested = body.get("locks")
        if not isinstance(requested, list) or len(requested) > MAX_LOCKS:
            raise BadRequest(f"locks must be a list of at most {MAX_LOCKS} [x, y, w, h] boxes")
        boxes = [list(parse_box(b, session.width, session.height, "a lock")) for b in requested]

        def write(room: Room) -> list[str]:
            current = room.meta.get(schema.Meta.LOCKS)
            if isinstance(current, Array):
                current.clear()
                current.extend(boxes)
            else:
                room.meta[schema.Meta.LOCKS] = Array(boxes)
            return locks.approved_layers(room)

        def audit(frozen: list[str]) -> list[Statement]:
            # The layers approved now are the picture the locks freeze (see locks.py).
            detail = {"locks": boxes, locks.FROZEN: frozen}
            return [audit_statement(session_id, actor, "session.locks", session_id, detail)]

        await self.rooms.server_write(session_id, write, audit)
        return boxes


def _patch_from_upload(
    parent: np.ndarray, upload: np.ndarray, box: tuple[int, ...] | None, locked: list[locks.Box]
) -> tuple[bytes, tuple[int, ...]]:
    """The layer's patch: changed pixels only for a whole version, the box as sent otherwise.

    Either way a locked pixel may not change (Conflict, naming the locks); a box's pixels
    over a lock that equal the picture's are made transparent, so the layer does not cover
    the lock and stays approvable.
    """
    if box is None:
        changed = (upload[..., :3] != parent).any(axis=2) & (upload[..., 3] > 0)
        if not changed.any():
            raise BadRequest("the upload is identical to the current version")
        _refuse_locked_changes(changed, (0, 0), locked)
        ys, xs = np.nonzero(changed)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        patch = upload[y0:y1, x0:x1].copy()
        patch[..., 3] = np.where(changed[y0:y1, x0:x1], 255, 0)
        box = (x0, y0, x1 - x0, y1 - y0)
    else:
        patch = upload
        x, y, w, h = box
        if locks.could_cover(box, locked):
            under = parent[y : y + h, x : x + w]
            visible = patch[..., 3] > 0
            changed = (patch[..., :3] != under).any(axis=2) & visible
            _refuse_locked_changes(changed, (x, y), locked)
            inside = locks.lock_mask([(lx - x, ly - y, lw, lh) for lx, ly, lw, lh in locked], w, h)
            patch = patch.copy()
            patch[..., 3] = np.where(inside, 0, patch[..., 3])
    out = io.BytesIO()
    Image.fromarray(patch, mode="RGBA").save(out, format="PNG")
    return out.getvalue(), box


def _refuse_locked_changes(
    changed: np.ndarray, origin: tuple[int, int], locked: list[locks.Box]
) -> None:
    """Conflict if any changed pixel (``changed`` placed at ``origin``) lies in a lock."""
    touched = locks.locks_covered(changed, origin, locked)
    if not touched:
        return
    height, width = changed.shape
    shifted = [(lx - origin[0], ly - origin[1], lw, lh) for lx, ly, lw, lh in touched]
    count = int((changed & locks.lock_mask(shifted, width, height)).sum())
    raise Conflict(
        f"the upload changes {count} locked pixels, in {locks.describe(touched)}; keep those"
        " regions as they are in the current version, or ask the owner to unlock them"
    )
