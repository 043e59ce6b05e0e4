"""Locks bind every version (issue 10 item 6): uploaded or generated, at upload, at decision
time and in the export, no locked pixel of the approved picture ever changes.

One server serves the module; each test makes its own session (the helpers of
test_decisions.py, so both follow the same way of joining a session).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from proofroom.client import ApiError
from proofroom.server.rooms import Room

from .helpers import ADMIN_TOKEN, RunningServer, decode, encode_png, run_server
from .test_decisions import (
    Meeting,
    drop_pin,
    fix,
    http_error,
    in_module_loop,
    layer,
    meeting,
    state_of,
    wait_state,
)

LOCK = [0, 0, 80, 60]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningServer]:
    async with run_server(tmp_path_factory.mktemp("locks") / "data") as running:
        yield running


def painted(image: np.ndarray, box: tuple[int, int, int, int], color: tuple[int, ...]) -> bytes:
    """``image`` with ``box`` painted over, as PNG."""
    pixels = image.copy()
    x, y, w, h = box
    pixels[y : y + h, x : x + w] = color
    return encode_png(pixels)


async def set_locks(m: Meeting, *boxes: list[int]) -> None:
    await m.session_call("owner", "PUT", "/locks", json={"locks": list(boxes)})


async def export(m: Meeting) -> tuple[np.ndarray, dict[str, object]]:
    async with m.api("owner") as api:
        data = (await api.request("GET", m.path("/export.png"))).content
    with Image.open(io.BytesIO(data)) as img:
        info = json.loads(img.text["proofroom"])
    return decode(data), info


def locked_part(pixels: np.ndarray, box: list[int] = LOCK) -> np.ndarray:
    x, y, w, h = box
    return pixels[y : y + h, x : x + w]


@in_module_loop
async def test_an_upload_that_changes_a_locked_pixel_is_refused_naming_the_lock(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Upload into a lock")
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        await set_locks(m, LOCK, [140, 100, 20, 20])
        # A whole version that repaints a 20x20 square across the lock's corner: the 10x10
        # inside it are locked pixels.
        err = await http_error(
            409, m.upload("editor", "p", painted(m.base, (70, 50, 20, 20), (0, 255, 0)))
        )
        assert "100 locked pixels" in err.message and "[0, 0, 80, 60]" in err.message
        assert "[140, 100, 20, 20]" not in err.message  # only the locks it touches
        # A patch at a box reaching into the lock with new pixels there: refused too.
        patch = np.full((20, 30, 3), (10, 200, 60), np.uint8)
        err = await http_error(
            409, m.upload("editor", "p", encode_png(patch), box=[60, 50, 30, 20])
        )
        assert "[0, 0, 80, 60]" in err.message
        assert len(viewer.layers) == 0
        uploads = [e for e in await m.audit() if e["action"] == "layer.upload"]
        assert uploads == []

        # The same box whose locked part repeats the picture exactly: accepted, and the
        # stored patch is transparent over the lock, so it does not cover it.
        honest = m.base[50:70, 60:90].copy()
        honest[:, 20:] = (10, 200, 60)  # only x >= 80 changes
        version = await m.upload("editor", "p", encode_png(honest), box=[60, 50, 30, 20])
        await viewer.wait_for(lambda: len(viewer.layers) == 1)
        async with m.api("viewer") as api:
            stored = decode(await api.blob(layer(viewer, version)["patch"]), "RGBA")
        assert not stored[:10, :20, 3].any()  # the part inside [0, 0, 80, 60]
        assert (stored[:, 20:, 3] == 255).all()
        # A whole version that changes only unlocked pixels is fine, and is approvable.
        outside = await m.upload("editor", "p", painted(m.base, (100, 70, 20, 20), (9, 9, 9)))
        await m.decide("approver", version, "approve")
        await m.decide("approver", outside, "approve")
        pixels, info = await export(m)
        assert [lay["id"] for lay in info["layers"]] == [version, outside]  # type: ignore[index]
        assert np.array_equal(locked_part(pixels), locked_part(m.base))
        assert not np.array_equal(pixels, m.base)


@in_module_loop
async def test_a_version_made_before_a_lock_cannot_be_approved_into_it(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Locked after")
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        inside = await m.upload("editor", "p", painted(m.base, (10, 10, 20, 20), (0, 0, 255)))
        elsewhere = await m.upload("editor", "p", painted(m.base, (100, 80, 20, 20), (0, 0, 9)))
        await set_locks(m, LOCK)
        err = await http_error(409, m.decide("approver", inside, "approve"))
        assert inside in err.message and "[0, 0, 80, 60]" in err.message
        assert state_of(viewer, inside) == "pending"
        # Other decisions on it are fine; so is approving a version clear of the lock.
        await m.decide("approver", inside, "request_changes", "the logo is locked")
        await m.decide("approver", elsewhere, "approve")
        await wait_state(viewer, elsewhere, "approved")
        await http_error(409, m.decide("owner", inside, "approve"))  # nobody may
        assert state_of(viewer, inside) == "changes_requested"
    pixels, info = await export(m)
    assert [lay["id"] for lay in info["layers"]] == [elsewhere]  # type: ignore[index]
    assert np.array_equal(locked_part(pixels), locked_part(m.base))


@in_module_loop
async def test_lowering_required_approvals_cannot_approve_a_layer_into_a_lock(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Required approvals")
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        await m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 2})
        inside = await m.upload("editor", "p", painted(m.base, (10, 10, 20, 20), (0, 0, 255)))
        await m.decide("approver", inside, "approve")  # one of two: still pending
        await set_locks(m, LOCK)
        err = await http_error(
            409, m.session_call("owner", "PATCH", "/settings", json={"required_approvals": 1})
        )
        assert inside in err.message
        assert state_of(viewer, inside) == "pending"
        record = await srv.services.records.get_session(m.sid)
        assert record is not None and record.required_approvals == 2
        settings_rows = [e for e in await m.audit() if e["action"] == "session.update"]
        assert [e["detail"]["required_approvals"] for e in settings_rows] == [2]


@in_module_loop
async def test_a_layer_approved_before_the_lock_is_the_picture_the_lock_keeps(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Lock the fixed logo")
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        logo = await m.upload("editor", "p", painted(m.base, (10, 10, 20, 20), (0, 0, 255)))
        await m.decide("approver", logo, "approve")
        await set_locks(m, LOCK)
        await m.decide("owner", logo, "approve")  # approving it again changes nothing
        await wait_state(viewer, logo, "approved")
    pixels, info = await export(m)
    assert [lay["id"] for lay in info["layers"]] == [logo]  # type: ignore[index]
    assert info["withheld"] == []
    assert (locked_part(pixels)[10:30, 10:30] == (0, 0, 255)).all()


@in_module_loop
async def test_export_withholds_a_layer_approved_into_a_lock_by_older_code(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Legacy")
    async with m.client("commenter") as commenter, m.client("viewer") as viewer:
        await drop_pin(m, commenter, "p", "commenter")
        inside = await m.upload("editor", "p", painted(m.base, (10, 10, 20, 20), (0, 0, 255)))
        await set_locks(m, LOCK)
        # What a server without the decision-time check let through: approved anyway.
        room = await srv.services.rooms.acquire(m.sid)

        def approve_anyway(room: Room) -> None:
            for lay in room.layers:
                if lay.get("id") == inside:
                    lay["state"] = "approved"

        await room.server_write(approve_anyway)
        await wait_state(viewer, inside, "approved")
    pixels, info = await export(m)
    assert info["layers"] == []
    assert info["withheld"] == [  # type: ignore[comparison-overlap]
        {"id": inside, "locks": [LOCK], "reason": "changes pixels inside locked regions"}
    ]
    assert np.array_equal(pixels, m.base)


@in_module_loop
async def test_generated_versions_subtract_locks_and_an_older_fix_is_not_approvable(
    srv: RunningServer,
) -> None:
    m = await meeting(srv, "Generated")
    worker = srv.services.worker
    assert worker is not None
    async with m.client("commenter") as commenter, m.client("owner") as owner:
        await drop_pin(m, commenter, "p", "commenter", region=[60, 40, 40, 40])
        # A fix queued before the lock: its mask knew nothing of it.
        async with worker.device:
            early = await m.session_call("editor", "POST", "/pins/p/fix", json={"steps": 2})
            await set_locks(m, LOCK)
        [early_layer] = [f"l_{job}" for job in early["jobs"]]
        await owner.wait_for(
            lambda: any(lay["id"] == early_layer for lay in owner.layers), timeout=30
        )
        err = await http_error(409, m.decide("approver", early_layer, "approve"))
        assert "[0, 0, 80, 60]" in err.message
        # A fix asked for now, across the lock's edge: only the outside may change.
        [late] = await fix(m, owner, "p", steps=2)
        made = layer(owner, late)
        async with m.api("owner") as api:
            patch = decode(await api.blob(made["patch"]), "RGBA")
        x, y = int(made["box"][0]), int(made["box"][1])
        assert not patch[: max(0, 60 - y), : max(0, 80 - x), 3].any()
        await m.decide("approver", late, "approve")
    pixels, info = await export(m)
    assert [lay["id"] for lay in info["layers"]] == [late]  # type: ignore[index]
    assert np.array_equal(locked_part(pixels), locked_part(m.base))
    assert not np.array_equal(pixels, m.base)


# -- previews of big pictures (issue 11: first paint) -------------------------------------------


@in_module_loop
async def test_a_big_picture_has_a_small_preview_made_once_and_a_small_one_is_its_own(
    srv: RunningServer,
) -> None:
    gradient = np.linspace(0, 255, 2400, dtype=np.uint8)
    pixels = np.stack([np.tile(gradient, (1600, 1))] * 3, axis=2)
    created = await srv.admin.create_session(encode_png(pixels), title="Big")
    base = created["base"]
    async with srv.api(ADMIN_TOKEN) as api:
        first = await api.request("GET", f"/blobs/{base}/preview")
        again = await api.request("GET", f"/blobs/{base}/preview")
        cached = await api.request(
            "GET", f"/blobs/{base}/preview", headers={"If-None-Match": first.headers["etag"]}
        )
    assert first.headers["content-type"] == "image/jpeg"
    assert first.headers["etag"] == again.headers["etag"] and first.content == again.content
    assert cached.status_code == 304
    with Image.open(io.BytesIO(first.content)) as img:
        assert img.format == "JPEG" and img.size == (1024, 683)
        small = np.asarray(img.convert("RGB"))
    # The same picture, smaller: left dark, right bright.
    assert small[300, 10].mean() < 20 and small[300, -10].mean() > 235
    assert len(first.content) < 200_000
    # The preview is a blob like any other (the etag names it).
    async with srv.api(ADMIN_TOKEN) as api:
        assert await api.blob(first.headers["etag"].strip('"')) == first.content

    m = await meeting(srv)  # 160x120: no preview needed, the picture itself comes back
    small_base = (await m.session_call("viewer", "GET", ""))["base"]
    async with m.api("viewer") as api:
        own = await api.request("GET", f"/blobs/{small_base}/preview")
        assert own.headers["content-type"] == "image/png"
        assert own.content == await api.blob(small_base)
        with pytest.raises(ApiError) as missing:
            await api.request("GET", f"/blobs/{'0' * 64}/preview")
        assert missing.value.status == 404
    async with srv.api(None) as anonymous:
        with pytest.raises(ApiError) as refused:
            await anonymous.request("GET", f"/blobs/{base}/preview")
        assert refused.value.status == 401
