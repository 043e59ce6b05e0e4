"""A stack of revisions in one room, through the real server, queue, worker and the real
``resample`` and ``camera`` engines: upscale, animate, carried pins, decisions, frame pins,
and what is refused (and how it says why)."""

from __future__ import annotations

import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from proofroom.client import ApiClient, ApiError
from proofroom.server.engines import ProgressFn, registry
from proofroom.server.engines.kinds import UpscaleEngine, UpscaleParams

from .helpers import RunningServer, decode, eventually, png_bytes, run_server
from .test_fixes import photo_session


@pytest.fixture
async def small_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Limits small enough to hit with a 160x120 photograph."""
    async with run_server(
        tmp_path / "data",
        max_upscale_pixels=320 * 240,
        max_clip_seconds=2.0,
        max_clip_pixels=320 * 240,
    ) as server:
        yield server


def _revision(client: Any, revision_id: str) -> dict[str, Any] | None:
    for entry in client.revisions.to_py() or []:
        if entry["id"] == revision_id:
            return dict(entry)
    return None


async def _error(api: ApiClient, path: str, body: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as err:
        await api.json("POST", path, json=body)
    return err.value


async def test_an_upscale_is_a_new_revision_with_the_open_pins_carried(
    server: RunningServer,
) -> None:
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
        ApiClient(server.url, tokens["approver"]) as approver,
    ):
        editor.add_pin(
            "p1", x=50, y=40, text="keep the badge", author=users["editor"], region=[40, 30, 30, 24]
        )
        editor.add_pin("p2", x=10, y=10, text="done", author=users["editor"])
        await editor.flush()
        await viewer.wait_for(lambda: "p2" in viewer.pins)
        editor.pins["p2"]["status"] = "resolved"
        await editor.flush()
        reply = await api.json("POST", f"/api/sessions/{sid}/upscale", json={"factor": 2})
        assert reply["kind"] == "upscale" and reply["engine"] == "resample"
        rid = f"r_{reply['job']}"
        await viewer.wait_for(lambda: _revision(viewer, rid) is not None, timeout=30)
        original, revision = viewer.revisions.to_py()
        assert original["id"] == "v1" and original["kind"] == "original"
        assert original["image"] == viewer.meta["base"]
        assert revision["kind"] == "upscale" and revision["media"] == "image"
        assert (revision["width"], revision["height"]) == (320, 240)
        assert revision["state"] == "pending" and revision["source"]["revision"] == "v1"
        assert revision["params"]["engine"] == "resample" and revision["params"]["factor"] == 2
        assert viewer.jobs[reply["job"]]["status"] == "done"
        assert viewer.jobs[reply["job"]]["revision"] == rid
        # The picture is the source, larger: its area-downsample matches the source.
        big = decode(await api.blob(revision["image"]))
        small = decode(await api.blob(viewer.meta["base"]))
        assert big.shape == (240, 320, 3)
        down = big.reshape(120, 2, 160, 2, 3).mean(axis=(1, 3))
        assert np.abs(down - small.astype(np.float64)).mean() < 1.0
        # The open pin came along, scaled; the resolved one stayed behind.
        carry = revision["carry"]
        assert carry["mode"] == "open" and set(carry["pins"]) == {"p1"}
        copy = viewer.pins[carry["pins"]["p1"]]
        assert copy["revision"] == rid and copy["carried_from"] == "p1"
        assert (copy["x"], copy["y"]) == (100, 80)
        assert list(copy["region"]) == [80, 60, 60, 48]
        assert copy["text"] == "keep the badge" and copy["status"] == "open"
        # Its author still owns it: moving it on the larger picture (past the original's
        # width) is fine.
        editor.pins[carry["pins"]["p1"]]["x"] = 300
        await editor.flush()
        await viewer.wait_for(lambda: viewer.pins[carry["pins"]["p1"]]["x"] == 300)
        # ... but not past the revision's own size.
        editor.add_pin(
            "out", x=321, y=10, text="off the edge", author=users["editor"], revision=rid
        )
        await editor.flush()
        await editor.wait_for(lambda: bool(editor.denied), timeout=10)
        assert "inside the image" in editor.denied[-1]
        assert "out" not in server.services.rooms.rooms[sid].pins
        # An approver decides on the revision as a whole.
        decided = await approver.json(
            "POST",
            f"/api/sessions/{sid}/revisions/{rid}/decision",
            json={"decision": "approve", "note": "crisp"},
        )
        assert decided["revision"]["state"] == "approved"
        await viewer.wait_for(lambda: (_revision(viewer, rid) or {}).get("state") == "approved")
        async with ApiClient(server.url, tokens["owner"]) as owner:
            audit = await owner.json("GET", f"/api/sessions/{sid}/audit")
        actions = [e["action"] for e in audit["events"]]
        assert "upscale.request" in actions and "revision.decision" in actions
        # Editors cannot decide; a layer's rule about bodies holds here too.
        assert (
            await _error(
                api, f"/api/sessions/{sid}/revisions/{rid}/decision", {"decision": "approve"}
            )
        ).status == 403
        assert (
            await _error(
                approver, f"/api/sessions/{sid}/revisions/{rid}/decision", {"decision": "maybe"}
            )
        ).status == 400
        assert (
            await _error(
                approver, f"/api/sessions/{sid}/revisions/nope/decision", {"decision": "approve"}
            )
        ).status == 404


async def test_carry_none_leaves_the_open_pins_behind(server: RunningServer) -> None:
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        editor.add_pin("p1", x=50, y=40, text="here", author=users["editor"])
        await editor.flush()
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        reply = await api.json(
            "POST", f"/api/sessions/{sid}/upscale", json={"target": [240, 180], "carry": "none"}
        )
        rid = f"r_{reply['job']}"
        await editor.wait_for(lambda: _revision(editor, rid) is not None, timeout=30)
        revision = _revision(editor, rid)
        assert revision is not None
        assert revision["carry"] == {"mode": "none", "pins": {}, "left": ["p1"]}
        assert revision["params"]["factor"] == 1.5 and revision["width"] == 240
        assert set(editor.pins) == {"p1"}


async def test_a_clip_from_an_approved_still_and_pins_on_its_frames(
    server: RunningServer,
) -> None:
    import av

    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
        ApiClient(server.url, tokens["approver"]) as approver,
    ):
        up = await api.json("POST", f"/api/sessions/{sid}/upscale", json={"factor": 2})
        rid = f"r_{up['job']}"
        await editor.wait_for(lambda: _revision(editor, rid) is not None, timeout=30)
        # A clip is made from an approved still only.
        refused = await _error(api, f"/api/sessions/{sid}/animate", {"revision": rid})
        assert refused.status == 409 and "approve" in refused.message
        await approver.json(
            "POST", f"/api/sessions/{sid}/revisions/{rid}/decision", json={"decision": "approve"}
        )
        reply = await api.json(
            "POST",
            f"/api/sessions/{sid}/animate",
            json={"revision": rid, "seconds": 1, "fps": 12, "width": 160, "height": 120},
        )
        assert reply["kind"] == "animate" and reply["engine"] == "camera"
        cid = f"r_{reply['job']}"
        await editor.wait_for(lambda: _revision(editor, cid) is not None, timeout=60)
        clip = _revision(editor, cid)
        assert clip is not None
        assert clip["kind"] == "clip" and clip["media"] == "video"
        assert (clip["width"], clip["height"], clip["fps"], clip["frames"]) == (160, 120, 12, 12)
        assert clip["source"]["revision"] == rid and clip["state"] == "pending"
        for key, codec in (("mp4", "h264"), ("webm", "vp9")):
            data = await api.blob(clip[key])
            with av.open(io.BytesIO(data)) as container:
                stream = container.streams.video[0]
                assert stream.codec_context.name == codec
                frames = list(container.decode(stream))
            assert len(frames) == 12 and frames[0].width == 160
        for key, media in (("mp4", "video/mp4"), ("webm", "video/webm")):
            served = await api.request("GET", f"/blobs/{clip[key]}")
            assert served.headers["content-type"] == media
        poster = decode(await api.blob(clip["poster"]))
        assert poster.shape == (120, 160, 3)
        job = await api.json("GET", f"/api/jobs/{reply['job']}")
        assert job["status"] == "done" and job["revision"] == cid and job["kind"] == "animate"
        # Pins carry a frame (and a range) on a clip; the guard checks them.
        editor.add_pin(
            "f5",
            x=20,
            y=20,
            text="flicker",
            author=users["editor"],
            revision=cid,
            frame=5,
            frames=[3, 8],
        )
        await editor.flush()
        await eventually(lambda: "f5" in server.services.rooms.rooms[sid].pins)
        editor.add_pin(
            "f900", x=20, y=20, text="late", author=users["editor"], revision=cid, frame=900
        )
        await editor.flush()
        await editor.wait_for(lambda: bool(editor.denied), timeout=10)
        assert "frame" in editor.denied[-1] and "0 to 11" in editor.denied[-1]
        assert "f900" not in server.services.rooms.rooms[sid].pins


async def test_a_frame_on_a_still_or_an_unknown_revision_is_refused(
    server: RunningServer,
) -> None:
    sid, tokens, users = await photo_session(server)
    async with server.client(sid, tokens["editor"]) as editor:
        editor.add_pin("s1", x=20, y=20, text="on a still", author=users["editor"], frame=3)
        await editor.flush()
        await editor.wait_for(lambda: bool(editor.denied), timeout=10)
        assert "clip" in editor.denied[-1]
    async with server.client(sid, tokens["editor"]) as editor:
        editor.add_pin("s2", x=20, y=20, text="where?", author=users["editor"], revision="r_x")
        await editor.flush()
        await editor.wait_for(lambda: bool(editor.denied), timeout=10)
        assert "no revision" in editor.denied[-1]
    rooms = server.services.rooms.rooms[sid].pins
    assert "s1" not in rooms and "s2" not in rooms


async def test_bad_upscale_and_animate_requests_say_what_is_allowed(
    small_server: RunningServer,
) -> None:
    server = small_server
    sid, tokens, _ = await photo_session(server)
    up, an = f"/api/sessions/{sid}/upscale", f"/api/sessions/{sid}/animate"
    async with ApiClient(server.url, tokens["editor"]) as api:
        err = await _error(api, up, {"factor": 5})
        assert err.status == 400 and "[1.5, 2.0, 3.0, 4.0]" in err.message
        err = await _error(api, up, {"factor": 3})  # 480x360 > 320x240 allowed
        assert err.status == 413 and "PROOFROOM_MAX_UPSCALE_PIXELS" in err.message
        err = await _error(api, up, {"factor": 2, "sharpen": True})
        assert err.status == 400 and "sharpen" in err.message
        err = await _error(api, up, {"factor": 2, "engine": "magic"})
        assert err.status == 400 and "resample" in err.message
        err = await _error(api, up, {"target": [300, 100]})
        assert err.status == 400 and "aspect" in err.message
        err = await _error(api, up, {"factor": 2, "engine": "spandrel"})
        assert err.status in (400, 422) and "spandrel" in err.message
        err = await _error(api, an, {"seconds": 30})
        assert err.status == 413 and "PROOFROOM_MAX_CLIP_SECONDS" in err.message
        err = await _error(api, an, {"seconds": 1, "width": 640, "height": 480})
        assert err.status == 413 and "PROOFROOM_MAX_CLIP_PIXELS" in err.message
        err = await _error(api, an, {"seconds": 1, "width": 161, "height": 120})
        assert err.status == 400 and "even" in err.message
        err = await _error(api, an, {"seconds": 1, "motion": "spin"})
        assert err.status == 400 and "push-in" in err.message
        err = await _error(api, an, {"seconds": 1, "fps": 240})
        assert err.status == 400 and "fps" in err.message
        err = await _error(api, an, {"seconds": 1, "revision": "r_nope"})
        assert err.status == 404
    async with ApiClient(server.url, tokens["commenter"]) as commenter:
        assert (await _error(commenter, up, {"factor": 2})).status == 403
        assert (await _error(commenter, an, {})).status == 403


class FlakyUpscale(UpscaleEngine):
    """Crashes on its first call (as a worker dying mid-job would), then upscales."""

    name: ClassVar[str] = "flaky"
    calls: ClassVar[int] = 0

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}

    def upscale(self, image: np.ndarray, params: UpscaleParams, progress: ProgressFn) -> np.ndarray:
        type(self).calls += 1
        if type(self).calls == 1:
            raise RuntimeError("the device fell over")
        progress(1, 1, None)
        import cv2

        return np.asarray(cv2.resize(image, (params.width, params.height)))


class StallingUpscale(UpscaleEngine):
    """Reports progress until its job is cancelled (progress raises JobCancelled)."""

    name: ClassVar[str] = "stall"

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}

    def upscale(self, image: np.ndarray, params: UpscaleParams, progress: ProgressFn) -> np.ndarray:
        step = 0
        while True:
            step += 1
            progress(step, 10**9, None)
            threading.Event().wait(0.01)  # a model step's worth of work


@pytest.fixture
def stand_in_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.ENGINES["upscale"], "flaky", f"{__name__}:FlakyUpscale")
    monkeypatch.setitem(registry.ENGINES["upscale"], "stall", f"{__name__}:StallingUpscale")
    FlakyUpscale.calls = 0


async def test_a_crashed_upscale_runs_again_and_yields_one_revision(
    server: RunningServer, stand_in_engines: None
) -> None:
    sid, tokens, _ = await photo_session(server)
    async with (
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        reply = await api.json(
            "POST", f"/api/sessions/{sid}/upscale", json={"factor": 2, "engine": "flaky"}
        )
        rid = f"r_{reply['job']}"
        await viewer.wait_for(lambda: _revision(viewer, rid) is not None, timeout=30)
        job = await api.json("GET", f"/api/jobs/{reply['job']}")
        assert job["status"] == "done" and job["attempts"] == 2 and job["revision"] == rid
        assert FlakyUpscale.calls == 2
        ids = [e["id"] for e in viewer.revisions.to_py()]
        assert ids == ["v1", rid]


async def test_an_upscale_shows_progress_and_can_be_cancelled(
    server: RunningServer, stand_in_engines: None
) -> None:
    sid, tokens, _ = await photo_session(server)
    async with (
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        reply = await api.json(
            "POST", f"/api/sessions/{sid}/upscale", json={"factor": 2, "engine": "stall"}
        )
        job_id = reply["job"]
        await viewer.wait_for(
            lambda: job_id in viewer.jobs and (viewer.jobs[job_id].get("step") or 0) > 0,
            timeout=30,
        )
        entry = viewer.jobs[job_id]
        assert entry["kind"] == "upscale" and entry["engine"] == "stall"
        assert entry["status"] == "running"
        cancelled = await api.json("POST", f"/api/jobs/{job_id}/cancel")
        assert cancelled["status"] == "cancelled"
        await viewer.wait_for(lambda: viewer.jobs[job_id]["status"] == "cancelled", timeout=30)
        assert viewer.revisions.to_py() in ([], None)
        await server.services.producer.flush()
        async with ApiClient(server.url, server.settings.admin_token) as admin:
            figures = await admin.producer_session(sid)
        assert figures["revisions"] == {"total": 0, "approved": 0}


async def test_required_approvals_and_the_producer_count_revisions(server: RunningServer) -> None:
    sid, tokens, _ = await photo_session(server)
    async with (
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
        ApiClient(server.url, tokens["approver"]) as approver,
        ApiClient(server.url, tokens["owner"]) as owner,
    ):
        await owner.json("PATCH", f"/api/sessions/{sid}/settings", json={"required_approvals": 2})
        reply = await api.json("POST", f"/api/sessions/{sid}/upscale", json={"factor": 2})
        rid = f"r_{reply['job']}"
        await viewer.wait_for(lambda: _revision(viewer, rid) is not None, timeout=30)
        decided = await approver.json(
            "POST", f"/api/sessions/{sid}/revisions/{rid}/decision", json={"decision": "approve"}
        )
        assert decided["revision"]["state"] == "pending"  # one of the two approvals it needs
        await owner.json("PATCH", f"/api/sessions/{sid}/settings", json={"required_approvals": 1})
        await viewer.wait_for(lambda: (_revision(viewer, rid) or {}).get("state") == "approved")
    await server.services.producer.flush()  # the index follows events on the write path
    async with ApiClient(server.url, server.settings.admin_token) as admin:
        figures = await admin.producer_session(sid)
        assert figures["revisions"] == {"total": 1, "approved": 1}
        listing = await admin.producer()
        assert listing["totals"]["revisions"] == {"total": 1, "approved": 1}


async def test_a_parallax_uses_the_approved_layers_as_depth_planes(server: RunningServer) -> None:
    sid, tokens, users = await photo_session(server)
    base = f"/api/sessions/{sid}"
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
        ApiClient(server.url, tokens["approver"]) as approver,
    ):
        editor.add_pin(
            "p1", x=50, y=40, text="lift", author=users["editor"], region=[40, 30, 30, 24]
        )
        await editor.flush()
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        await api.json("POST", f"{base}/pins/p1/fix", json={"variants": 1})
        await editor.wait_for(lambda: len(editor.layers) == 1, timeout=30)
        layer_id = editor.layers[0]["id"]
        await approver.json(
            "POST", f"{base}/layers/{layer_id}/decision", json={"decision": "approve"}
        )
        reply = await api.json(
            "POST", f"{base}/animate", json={"seconds": 0.5, "fps": 12, "motion": "parallax"}
        )
        cid = f"r_{reply['job']}"
        await editor.wait_for(lambda: _revision(editor, cid) is not None, timeout=60)
        clip = _revision(editor, cid)
        assert clip is not None
        assert clip["source"] == {"revision": "v1", "layers": [layer_id]}
        assert clip["params"]["motion"] == "parallax" and clip["params"]["planes"] == 1
        assert (clip["width"], clip["height"], clip["frames"]) == (160, 120, 6)
        # A pin on a fix's pin of the clip is not a fix: fixes change the original only.
        carried = clip["carry"]["pins"]
        assert carried == {} or "p1" not in carried  # p1 was resolved by the approval
        editor.add_pin("c1", x=10, y=10, text="here", author=users["editor"], revision=cid)
        await editor.flush()
        await eventually(lambda: "c1" in server.services.rooms.rooms[sid].pins)
        refused = await _error(api, f"{base}/pins/c1/fix", {"region": [0, 0, 10, 10]})
        assert refused.status == 409 and "original" in refused.message
        with pytest.raises(ApiError) as err:
            await api.request(
                "POST",
                f"{base}/pins/c1/versions",
                files={"image": ("v.png", png_bytes(160, 120), "image/png")},
            )
        assert err.value.status == 409 and "original" in err.value.message
