"""Manual versions (a retouched image uploaded as a layer) and the owner's locks."""

from __future__ import annotations

import io
import json
import secrets
import time
from typing import Any

import anyio.to_thread
import numpy as np
from PIL import Image
from pycrdt import Array, Map

from ...shared import schema
from ...shared.enums import LayerSource, LayerState
from ...shared.errors import BadRequest, NotFound
from ...shared.permissions import Action
from ..identity import Identity
from ..images import normalize_image
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.records import Records, audit_statement
from . import events
from .fixes import _approved_chain, _decode_rgb, _last_approved_layer, _pin_links, open_pin
from .flatten import flatten_layers
from .masks import parse_box

MAX_LOCKS = 64


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
        normalized = normalize_image(image, max_pixels=self.max_pixels)
        parent_id = _last_approved_layer(room)
        chain = _approved_chain(room, parent_id)
        patches = [(await self.blobs.get(lay["patch"]), lay["box"]) for lay in chain]
        base = await self.blobs.get(session.base_blob)
        box: tuple[int, ...] | None = None
        if box_text:
            try:
                box = parse_box(json.loads(box_text), session.width, session.height, "box")
            except ValueError:
                raise BadRequest("box must be JSON [x, y, w, h]") from None
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

        def build() -> tuple[bytes, tuple[int, ...]]:
            parent = flatten_layers(_decode_rgb(base), patches)
            with Image.open(io.BytesIO(normalized.png)) as img:
                upload = np.asarray(img.convert("RGBA"))
            return _patch_from_upload(parent, upload, box)

        patch_png, patch_box = await anyio.to_thread.run_sync(build)
        patch_id = await self.blobs.put(patch_png)
        layer_id = f"l_up_{secrets.token_hex(6)}"
        layer = {
            schema.Layer.ID: layer_id,
            schema.Layer.PIN_ID: pin_id,
            schema.Layer.PATCH: patch_id,
            schema.Layer.BOX: list(patch_box),
            schema.Layer.PARENT: parent_id,
            schema.Layer.SOURCE: LayerSource.UPLOAD.value,
            schema.Layer.PARAMS: {"engine": "upload", "upload": len(image)},
            schema.Layer.AUTHOR: actor.user_id,
            schema.Layer.CREATED_AT: time.time(),
            schema.Layer.STATE: LayerState.PENDING.value,
        }

        def write(room: Room) -> None:
            room.layers.append(Map({**layer, schema.Layer.DECISIONS: Map()}))
            _pin_links(room, pin_id, schema.Pin.LAYERS).append(layer_id)

        await room.server_write(write)
        await self.records.db.write(
            audit_statement(
                session_id,
                actor.user_id,
                "layer.upload",
                layer_id,
                {"pin": pin_id, "box": list(patch_box), "patch": patch_id},
            )
        )
        self.bus.publish(
            events.Event(
                events.LAYER_CREATED,
                session_id,
                {
                    "layer": layer_id,
                    "pin": pin_id,
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
        locks = body.get("locks")
        if not isinstance(locks, list) or len(locks) > MAX_LOCKS:
            raise BadRequest(f"locks must be a list of at most {MAX_LOCKS} [x, y, w, h] boxes")
        boxes = [list(parse_box(b, session.width, session.height, "a lock")) for b in locks]

        def write(room: Room) -> None:
            current = room.meta.get(schema.Meta.LOCKS)
            if isinstance(current, Array):
                current.clear()
                current.extend(boxes)
            else:
                room.meta[schema.Meta.LOCKS] = Array(boxes)

        await self.rooms.server_write(session_id, write)
        await self.records.db.write(
            audit_statement(
                session_id, actor.user_id, "session.locks", session_id, {"locks": boxes}
            )
        )
        return boxes


def _patch_from_upload(
    parent: np.ndarray, upload: np.ndarray, box: tuple[int, ...] | None
) -> tuple[bytes, tuple[int, ...]]:
    if box is None:
        changed = (upload[..., :3] != parent).any(axis=2) & (upload[..., 3] > 0)
        if not changed.any():
            raise BadRequest("the upload is identical to the current version")
        ys, xs = np.nonzero(changed)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        patch = upload[y0:y1, x0:x1].copy()
        patch[..., 3] = np.where(changed[y0:y1, x0:x1], 255, 0)
        box = (x0, y0, x1 - x0, y1 - y0)
    else:
        patch = upload
    out = io.BytesIO()
    Image.fromarray(patch, mode="RGBA").save(out, format="PNG")
    return out.getvalue(), box
