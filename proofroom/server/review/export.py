"""Export: the base flattened with the approved layers, with provenance in PNG text chunks."""

from __future__ import annotations

import io
import json
from typing import Any

import anyio.to_thread
from PIL import Image, PngImagePlugin
from pycrdt import Map

from ... import __version__
from ...shared import schema
from ...shared.enums import Decision, LayerState
from ...shared.errors import NotFound
from ...shared.permissions import Action
from ..identity import ADMIN_USER_ID, Identity
from ..rooms import Room, RoomManager
from ..store.blobs import BlobStore
from ..store.records import Records, audit_statement
from . import locks
from .fixes import _decode_rgb
from .flatten import flatten_layers


class Exporter:
    """Flatten a session's approved result and describe how it was made."""

    def __init__(self, records: Records, blobs: BlobStore, rooms: RoomManager) -> None:
        self.records = records
        self.blobs = blobs
        self.rooms = rooms

    async def provenance(self, session_id: str, actor: Identity) -> dict[str, Any]:
        """The JSON sidecar: the base and, for each approved layer, how and by whom."""
        actor.require(session_id, Action.ADMINISTER)
        session = await self.records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        room = await self.rooms.acquire(session_id)
        # Names beside ids: behind one link there may be many people (DESIGN.md section 5).
        names = await self.records.names(session_id)
        names.setdefault(ADMIN_USER_ID, "Admin")
        layers = []
        for layer in room.layers:
            if not isinstance(layer, Map):
                continue
            if layer.get(schema.Layer.STATE) != LayerState.APPROVED.value:
                continue
            data = layer.to_py() or {}
            decisions = data.get(schema.Layer.DECISIONS) or {}
            approvals = sorted(
                (
                    {
                        "user": user,
                        "name": names.get(user),
                        "at": d.get("at"),
                        "note": d.get("note"),
                    }
                    for user, d in decisions.items()
                    if d.get("decision") == Decision.APPROVE
                ),
                key=lambda a: a["at"] or 0,
            )
            params = data.get(schema.Layer.PARAMS) or {}
            layers.append(
                {
                    "id": data.get(schema.Layer.ID),
                    "pin": data.get(schema.Layer.PIN_ID),
                    "source": data.get(schema.Layer.SOURCE),
                    "box": _whole(data.get(schema.Layer.BOX)),
                    "patch": data.get(schema.Layer.PATCH),
                    "author": data.get(schema.Layer.AUTHOR),
                    "author_name": names.get(str(data.get(schema.Layer.AUTHOR))),
                    "created_at": data.get(schema.Layer.CREATED_AT),
                    "approved_by": [a["user"] for a in approvals],
                    "approvals": approvals,
                    "approved_at": approvals[-1]["at"] if approvals else None,
                    "prompt": params.get("prompt"),
                    "negative_prompt": params.get("negative_prompt"),
                    "seed": _whole(params.get("seed")),
                    "steps": _whole(params.get("steps")),
                    "strength": params.get("strength"),
                    "guidance": params.get("guidance"),
                    "engine": params.get("engine"),
                    "model": params.get("model") or params.get("method"),
                    "params": _whole(params),
                }
            )
        withheld = await self._withhold_lock_breakers(session_id, room, layers)
        return {
            "software": f"Proofroom {__version__}",
            "session": session.id,
            "title": session.title,
            "base": session.base_blob,
            "size": [session.width, session.height],
            "layers": layers,
            "withheld": withheld,
        }

    async def _withhold_lock_breakers(
        self, session_id: str, room: Room, layers: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Take out of ``layers`` the approved ones that would change a locked pixel.

        Approval refuses them, so only a layer approved before that check existed (or by a
        path that missed it) gets here; the export flattens nothing that breaks a lock.
        """
        locked = locks.current_locks(room)
        if not locked or not layers:
            return []
        frozen = await locks.frozen_layers(self.records.db, session_id)
        withheld = []
        for layer in list(layers):
            if layer["id"] in frozen:
                continue
            touched = await locks.layer_covers(self.blobs, layer, locked)
            if touched:
                layers.remove(layer)
                withheld.append(
                    {
                        "id": layer["id"],
                        "locks": [list(box) for box in touched],
                        "reason": "changes pixels inside locked regions",
                    }
                )
        return withheld

    async def png(self, session_id: str, actor: Identity) -> tuple[bytes, dict[str, Any]]:
        """The flattened PNG (with its provenance in text chunks) and the sidecar JSON."""
        info = await self.provenance(session_id, actor)
        base = await self.blobs.get(info["base"])
        patches = [(await self.blobs.get(lay["patch"]), lay["box"]) for lay in info["layers"]]

        def render() -> bytes:
            image = flatten_layers(_decode_rgb(base), patches)
            meta = PngImagePlugin.PngInfo()
            meta.add_text("Software", info["software"])
            meta.add_text("Title", info["title"])
            meta.add_itxt("proofroom", json.dumps(info, sort_keys=True))
            parameters = a1111_parameters(info)
            if parameters:
                meta.add_itxt("parameters", parameters)
            out = io.BytesIO()
            Image.fromarray(image).save(out, format="PNG", pnginfo=meta)
            return out.getvalue()

        data = await anyio.to_thread.run_sync(render)
        await self.records.db.write(
            audit_statement(
                session_id,
                actor,
                "session.export",
                session_id,
                {"layers": [lay["id"] for lay in info["layers"]]},
            )
        )
        return data, info


def a1111_parameters(info: dict[str, Any]) -> str:
    """An AUTOMATIC1111-style ``parameters`` text for the last approved generated layer."""
    generated = [lay for lay in info["layers"] if lay.get("prompt") is not None]
    if not generated:
        return ""
    last = generated[-1]
    width, height = info["size"]
    fields = [
        ("Steps", last.get("steps")),
        ("CFG scale", last.get("guidance")),
        ("Seed", last.get("seed")),
        ("Size", f"{width}x{height}"),
        ("Model", last.get("model")),
        ("Denoising strength", last.get("strength")),
        ("Inpaint area", "Only masked"),
        ("Version", info["software"]),
    ]
    text = str(last.get("prompt") or "")
    if last.get("negative_prompt"):
        text += f"\nNegative prompt: {last['negative_prompt']}"
    text += "\n" + ", ".join(f"{k}: {v}" for k, v in fields if v is not None)
    return text


def _whole(value: Any) -> Any:
    """pycrdt reads every number as a float: give whole numbers back as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value
