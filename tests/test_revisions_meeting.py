"""A meeting, end to end on the real server and engines: upload, fix, approve, upscale,
approve, animate, pin on frame 30, approve, export both."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from proofroom.client import ApiClient

from .helpers import RunningServer, eventually
from .test_fixes import photo_session


def _revision(client: Any, revision_id: str) -> dict[str, Any] | None:
    return next((e for e in client.revisions.to_py() or [] if e["id"] == revision_id), None)


async def test_a_meeting_from_upload_to_an_exported_clip(server: RunningServer) -> None:
    import av

    sid, tokens, users = await photo_session(server)
    base = f"/api/sessions/{sid}"
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
        ApiClient(server.url, tokens["approver"]) as approver,
        ApiClient(server.url, tokens["owner"]) as owner,
    ):
        # Fix and approve on the original.
        editor.add_pin(
            "p1",
            x=50,
            y=40,
            text="remove the patch",
            author=users["editor"],
            region=[40, 30, 30, 24],
        )
        await editor.flush()
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        [job] = (await api.json("POST", f"{base}/pins/p1/fix", json={"variants": 1}))["jobs"]
        await editor.wait_for(lambda: len(editor.layers) == 1, timeout=30)
        layer_id = editor.layers[0]["id"]
        await approver.json(
            "POST", f"{base}/layers/{layer_id}/decision", json={"decision": "approve"}
        )
        # Upscale the approved state, and approve it.
        up = await api.json("POST", f"{base}/upscale", json={"factor": 2})
        rid = f"r_{up['job']}"
        await editor.wait_for(lambda: _revision(editor, rid) is not None, timeout=30)
        upscale = _revision(editor, rid)
        assert upscale is not None and upscale["source"] == {"revision": "v1", "layers": [layer_id]}
        await approver.json(
            "POST", f"{base}/revisions/{rid}/decision", json={"decision": "approve"}
        )
        # Animate the approved upscale; pin frame 30; approve the clip.
        an = await api.json(
            "POST",
            f"{base}/animate",
            json={"revision": rid, "seconds": 2, "fps": 24, "motion": "push-in"},
        )
        cid = f"r_{an['job']}"
        await editor.wait_for(lambda: _revision(editor, cid) is not None, timeout=60)
        clip = _revision(editor, cid)
        assert (
            clip is not None
            and clip["frames"] == 48
            and (clip["width"], clip["height"])
            == (
                320,
                240,
            )
        )
        editor.add_pin(
            "f30",
            x=160,
            y=120,
            text="the hand blurs here",
            author=users["editor"],
            revision=cid,
            frame=30,
        )
        await editor.flush()
        await eventually(lambda: "f30" in server.services.rooms.rooms[sid].pins)
        assert not editor.denied
        await approver.json(
            "POST",
            f"{base}/revisions/{cid}/decision",
            json={"decision": "approve", "note": "ship it"},
        )
        # Export both: the still as a PNG with provenance, the clip as an MP4 with it.
        still = await owner.request("GET", f"{base}/revisions/{rid}/export")
        assert still.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(still.content)) as img:
            assert img.size == (320, 240)
            info = json.loads(img.text["proofroom"])
        assert info["revision"] == rid and info["params"]["engine"] == "resample"
        assert info["source"]["layers"] == [layer_id] and info["approved_by"] == [users["approver"]]
        movie = await owner.request("GET", f"{base}/revisions/{cid}/export")
        assert movie.headers["content-type"] == "video/mp4"
        with av.open(io.BytesIO(movie.content)) as container:
            meta = json.loads(container.metadata["comment"])
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == 48 and meta["revision"] == cid and meta["params"]["engine"] == "camera"
        sidecar = await owner.json("GET", f"{base}/revisions/{cid}/export.json")
        assert sidecar == meta
        assert sidecar["approvals"][0]["note"] == "ship it"
        assert sidecar["source"]["revision"] == rid
        audit = await owner.json("GET", f"{base}/audit")
        actions = [e["action"] for e in audit["events"]]
        for action in ("fix.request", "upscale.request", "animate.request", "revision.export"):
            assert action in actions
        assert job
