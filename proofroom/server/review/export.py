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
from ...shared.errors import Conflict, NotFound
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

    async def revision_provenance(
        self, session_id: str, revision_id: str, actor: Identity
    ) -> dict[str, Any]:
        """The sidecar of one approved revision (an upscale or a clip): how and by whom."""
        actor.require(session_id, Action.ADMINISTER)
        session = await self.records.get_session(session_id)
        if session is None:
            raise NotFound("no such session")
        room = await self.rooms.acquire(session_id)
        entry = next(
            (
                e.to_py() or {}
                for e in room.revisions
                if isinstance(e, Map) and e.get(schema.Revision.ID) == revision_id
            ),
            None,
        )
        if entry is None:
            raise NotFound("no such revision in this session")
        if entry.get(schema.Revision.STATE) != LayerState.APPROVED.value:
            raise Conflict(
                f"revision {revision_id} is {entry.get(schema.Revision.STATE)}; only an approved"
                " revision is exported"
            )
        names = await self.records.names(session_id)
        names.setdefault(ADMIN_USER_ID, "Admin")
        decisions = entry.get(schema.Revision.DECISIONS) or {}
        approvals = sorted(
            (
                {"user": user, "name": names.get(user), "at": d.get("at"), "note": d.get("note")}
                for user, d in decisions.items()
                if d.get("decision") == Decision.APPROVE
            ),
            key=lambda a: a["at"] or 0,
        )
        author = entry.get(schema.Revision.AUTHOR)
        return {
            "software": f"Proofroom {__version__}",
            "session": session.id,
            "title": session.title,
            "revision": revision_id,
            "kind": entry.get(schema.Revision.KIND),
            "media": entry.get(schema.Revision.MEDIA),
            "size": _whole([entry.get(schema.Revision.WIDTH), entry.get(schema.Revision.HEIGHT)]),
            "fps": _whole(entry.get(schema.Revision.FPS)),
            "frames": _whole(entry.get(schema.Revision.FRAMES)),
            "blobs": {
                key: entry.get(key)
                for key in (
                    schema.Revision.IMAGE,
                    schema.Revision.MP4,
                    schema.Revision.WEBM,
                    schema.Revision.POSTER,
                )
                if entry.get(key)
            },
            "source": _whole(entry.get(schema.Revision.SOURCE)),
            "carry": _whole(entry.get(schema.Revision.CARRY)),
            "author": author,
            "author_name": names.get(str(author)),
            "created_at": entry.get(schema.Revision.CREATED_AT),
            "approvals": approvals,
            "approved_by": [a["user"] for a in approvals],
            "params": _whole(entry.get(schema.Revision.PARAMS) or {}),
        }

    async def revision_file(
        self, session_id: str, revision_id: str, actor: Identity
    ) -> tuple[bytes, str, dict[str, Any]]:
        """An approved revision as a file: a PNG with its provenance in text chunks for a
        still, the H.264 MP4 with it in the container's metadata for a clip."""
        info = await self.revision_provenance(session_id, revision_id, actor)
        text = json.dumps(info, sort_keys=True)
        if info["media"] == "video":
            mp4 = await self.blobs.get(info["blobs"]["mp4"])
            data = await anyio.to_thread.run_sync(_tag_mp4, mp4, info["title"], text)
            media = "video/mp4"
        else:
            image = await self.blobs.get(info["blobs"]["image"])

            def render() -> bytes:
                meta = PngImagePlugin.PngInfo()
                meta.add_text("Software", info["software"])
                meta.add_text("Title", info["title"])
                meta.add_itxt("proofroom", text)
                out = io.BytesIO()
                with Image.open(io.BytesIO(image)) as img:
                    img.save(out, format="PNG", pnginfo=meta, compress_level=1)
                return out.getvalue()

            data = await anyio.to_thread.run_sync(render)
            media = "image/png"
        await self.records.db.write(
            audit_statement(
                session_id, actor, "revision.export", revision_id, {"media": info["media"]}
            )
        )
        return data, media, info


def _tag_mp4(mp4: bytes, title: str, provenance: str) -> bytes:
    """The clip's MP4 remuxed (no re-encoding) with its provenance in the metadata."""
    import tempfile
    from pathlib import Path

    import av

    # faststart rewrites the file in a second pass, so it needs a real file.
    with tempfile.TemporaryDirectory(prefix="proofroom-export-") as tmp:
        path = Path(tmp) / "clip.mp4"
        with (
            av.open(io.BytesIO(mp4), "r") as source,
            av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as target,
        ):
            target.metadata["title"] = title
            target.metadata["comment"] = provenance
            streams = {s.index: target.add_stream_from_template(s) for s in source.streams.video}
            for packet in source.demux(*source.streams.video):
                if packet.dts is None:
                    continue
                packet.stream = streams[packet.stream.index]
                target.mux(packet)
        return path.read_bytes()


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
