"""Fixes end to end through the real server, queue, worker and classical engine (the tests'
server default; the engines' own tests: test_engines_api.py, test_engines_unmasked.py)."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from proofroom.client import ApiClient, ApiError, SessionClient

from .helpers import ReviewSession, RunningServer, decode, eventually, join_session, png_bytes


def photo_png(width: int = 160, height: int = 120) -> bytes:
    """A real photograph (scikit-image's astronaut), resized."""
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def mask_data_url(mask: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


async def photo_session(server: RunningServer) -> tuple[str, dict[str, str], dict[str, str]]:
    created = await server.admin.create_session(photo_png(), title="Photo")
    joined = await join_session(server.url, created)
    return created["id"], joined.tokens, joined.users


async def drop_pin(client: SessionClient, pin_id: str, author: str, **extra: Any) -> None:
    client.add_pin(pin_id, x=50, y=40, text="remove the patch on the suit", author=author, **extra)
    await client.flush()


def composite(base: np.ndarray, patch: np.ndarray, box: list[float]) -> np.ndarray:
    x, y, w, h = (int(v) for v in box)
    out = base.astype(np.float64).copy()
    alpha = patch[..., 3:4].astype(np.float64) / 255
    region = out[y : y + h, x : x + w]
    out[y : y + h, x : x + w] = region * (1 - alpha) + patch[..., :3] * alpha
    result = np.rint(out).astype(np.uint8)
    result[y : y + h, x : x + w][patch[..., 3] == 0] = base[y : y + h, x : x + w][
        patch[..., 3] == 0
    ]
    return result


async def test_a_fix_becomes_a_layer_everyone_sees(server: RunningServer) -> None:
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await drop_pin(editor, "p1", users["editor"], region=[40, 30, 30, 24])
        await viewer.wait_for(lambda: "p1" in viewer.pins)
        seen_status: list[str] = []
        viewer.jobs.observe_deep(
            lambda events: seen_status.extend(str(j.get("status")) for j in viewer.jobs.values())
        )
        reply = await api.json(
            "POST",
            f"/api/sessions/{sid}/pins/p1/fix",
            json={"prompt": "plain white suit", "seed": 7, "variants": 1},
        )
        [job_id] = reply["jobs"]
        await viewer.wait_for(lambda: len(viewer.layers) == 1, timeout=30)
        job = viewer.jobs[job_id]
        assert job["status"] == "done" and job["layer"] == f"l_{job_id}"
        # An idle worker may claim the job before the viewer hears it was queued.
        assert seen_status[0] in ("queued", "running") and seen_status[-1] == "done"
        layer = viewer.layers[0]
        assert layer["pin_id"] == "p1" and layer["state"] == "pending"
        assert layer["author"] == users["editor"] and layer["source"] == "inpaint"
        params = layer["params"]
        assert params["engine"] == "classical" and params["prompt"] == "plain white suit"
        assert params["seed"] == 7 and params["job"] == job_id
        assert list(viewer.pins["p1"]["layers"]) == [layer["id"]]
        # Pixels outside the mask are bit-identical to the parent.
        base = decode(await api.blob(viewer.meta["base"]))
        patch = decode(await api.blob(layer["patch"]), "RGBA")
        _x, _y, w, h = (int(v) for v in layer["box"])
        assert patch.shape[:2] == (h, w)
        mask = np.zeros(base.shape[:2], dtype=bool)
        mask[30:54, 40:70] = True
        # Fully opaque inside the mask (feathered only at its edge): the fix really shows.
        assert patch[..., 3].max() == 255
        result = composite(base, patch, layer["box"])
        assert np.array_equal(result[~mask], base[~mask])
        assert not np.array_equal(result[mask], base[mask])
        job_json = await api.json("GET", f"/api/jobs/{job_id}")
        assert job_json["status"] == "done" and job_json["layer"] == layer["id"]


async def test_variants_get_consecutive_seeds_and_one_layer_each(
    server: RunningServer,
) -> None:
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await drop_pin(editor, "p1", users["editor"])
        mask = np.zeros((120, 160), dtype=bool)
        mask[10:30, 10:40] = True
        mask[80:100, 120:150] = True  # two separate blobs
        reply = await api.json(
            "POST",
            f"/api/sessions/{sid}/pins/p1/fix",
            json={"mask": mask_data_url(mask), "seed": 100, "variants": 3},
        )
        assert len(reply["jobs"]) == 3
        await editor.wait_for(lambda: len(editor.layers) == 3, timeout=30)
        seeds = sorted(layer["params"]["seed"] for layer in editor.layers)
        assert seeds == [100, 101, 102]
        assert {layer["params"]["job"] for layer in editor.layers} == set(reply["jobs"])


async def test_cancel_a_queued_job_and_not_a_finished_one(server: RunningServer) -> None:
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await drop_pin(editor, "p1", users["editor"], region=[10, 10, 20, 20])
        worker = server.services.worker
        assert worker is not None
        # Hold the worker's device so the jobs stay queued while we cancel one.
        async with worker.device:
            reply = await api.json("POST", f"/api/sessions/{sid}/pins/p1/fix", json={"variants": 3})
            first, second, third = reply["jobs"]
            await editor.wait_for(lambda: second in editor.jobs)
            cancelled = await api.json("POST", f"/api/jobs/{third}/cancel")
            assert cancelled["status"] == "cancelled"
            await editor.wait_for(lambda: editor.jobs[third]["status"] == "cancelled")
            assert editor.jobs[second]["position"] >= 1
        await editor.wait_for(lambda: editor.jobs[second]["status"] == "done", timeout=30)
        assert {layer["params"]["job"] for layer in editor.layers} == {first, second}
        with pytest.raises(ApiError) as err:
            await api.json("POST", f"/api/jobs/{first}/cancel")
        assert err.value.status == 409
        with pytest.raises(ApiError) as err:
            await api.json("POST", "/api/jobs/j_nope/cancel")
        assert err.value.status == 404


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int]] = {
    "mask_wrong_size": ({"mask": mask_data_url(np.ones((10, 10), dtype=bool))}, 400),
    "mask_empty": ({"mask": mask_data_url(np.zeros((120, 160), dtype=bool))}, 400),
    "mask_everything": ({"mask": mask_data_url(np.ones((120, 160), dtype=bool))}, 400),
    "mask_not_an_image": (
        {"mask": "data:image/png;base64," + base64.b64encode(b"not a png").decode()},
        400,
    ),
    "mask_not_base64": ({"mask": "data:image/png;base64,@@@"}, 400),
    "mask_jpeg": (
        {
            "mask": "data:image/jpeg;base64,"
            + base64.b64encode(png_bytes(160, 120, fmt="JPEG")).decode()
        },
        400,
    ),
    "mask_unknown_blob": ({"mask": "0" * 64}, 404),
    "region_outside": ({"region": [150, 100, 50, 50]}, 400),
    "region_negative": ({"region": [-5, 0, 10, 10]}, 400),
    "region_malformed": ({"region": [1, 2, 3]}, 400),
    "mask_and_region": (
        {"region": [1, 1, 5, 5], "mask": mask_data_url(np.ones((120, 160), dtype=bool))},
        400,
    ),
    "steps_zero": ({"region": [1, 1, 5, 5], "steps": 0}, 400),
    "steps_huge": ({"region": [1, 1, 5, 5], "steps": 10_000}, 400),
    "strength_zero": ({"region": [1, 1, 5, 5], "strength": 0}, 400),
    "strength_above_one": ({"region": [1, 1, 5, 5], "strength": 1.5}, 400),
    "variants_zero": ({"region": [1, 1, 5, 5], "variants": 0}, 400),
    "variants_many": ({"region": [1, 1, 5, 5], "variants": 50}, 400),
    "variants_fraction": ({"region": [1, 1, 5, 5], "variants": 1.5}, 400),
    "seed_negative": ({"region": [1, 1, 5, 5], "seed": -1}, 400),
    "prompt_not_text": ({"region": [1, 1, 5, 5], "prompt": 5}, 400),
    "no_mask_at_all": ({}, 400),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_bad_fix_requests_are_refused(server: RunningServer, case: str) -> None:
    sid, tokens, users = await photo_session(server)
    body, status = BAD_REQUESTS[case]
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await drop_pin(editor, "p1", users["editor"])
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        with pytest.raises(ApiError) as err:
            await api.json("POST", f"/api/sessions/{sid}/pins/p1/fix", json=body)
        assert err.value.status == status, err.value.message
        assert len(editor.jobs) == 0
        assert await server.services.queue.queued() == []


async def test_an_unknown_field_is_refused_saying_what_is_allowed(
    server: RunningServer, session: ReviewSession
) -> None:
    async with (
        server.client(session.id, session.tokens["editor"]) as editor,
        ApiClient(server.url, session.tokens["editor"]) as api,
    ):
        await drop_pin(editor, "p1", session.users["editor"], region=[1, 1, 5, 5])
        await eventually(lambda: "p1" in server.services.rooms.rooms[session.id].pins)
        with pytest.raises(ApiError) as err:
            await api.json(
                "POST", f"/api/sessions/{session.id}/pins/p1/fix", json={"colour": "red"}
            )
        assert err.value.status == 400
        for words in ["unknown field 'colour'", "allowed:", "color", "engine", "region", "seed"]:
            assert words in err.value.message
        assert await server.services.queue.queued() == []
        # (Engines, models and colours: tests/test_engines_api.py.)


async def test_fix_permissions_and_unknown_pins(
    server: RunningServer, session: ReviewSession
) -> None:
    async with server.client(session.id, session.tokens["editor"]) as editor:
        await drop_pin(editor, "p1", session.users["editor"], region=[1, 1, 5, 5])
        await eventually(lambda: "p1" in server.services.rooms.rooms[session.id].pins)
    for role in ("viewer", "commenter", "approver"):
        async with ApiClient(server.url, session.tokens[role]) as api:
            with pytest.raises(ApiError) as err:
                await api.json("POST", f"/api/sessions/{session.id}/pins/p1/fix", json={})
            assert err.value.status == 403
    async with ApiClient(server.url, session.tokens["owner"]) as api:
        with pytest.raises(ApiError) as err:
            await api.json("POST", f"/api/sessions/{session.id}/pins/nope/fix", json={})
        assert err.value.status == 404
        reply = await api.json("POST", f"/api/sessions/{session.id}/pins/p1/fix", json={})
        assert len(reply["jobs"]) == 1
    other = await server.new_session()
    async with ApiClient(server.url, other.tokens["editor"]) as api:
        with pytest.raises(ApiError) as err:
            await api.json("POST", f"/api/sessions/{session.id}/pins/p1/fix", json={})
        assert err.value.status == 403


async def test_locks_clip_the_mask(server: RunningServer) -> None:
    sid, tokens, users = await photo_session(server)
    room = await server.services.rooms.acquire(sid)
    await room.server_write(lambda r: r.meta["locks"].append([0, 0, 80, 120]))
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await drop_pin(editor, "p1", users["editor"])
        with pytest.raises(ApiError) as err:
            await api.json(
                "POST", f"/api/sessions/{sid}/pins/p1/fix", json={"region": [10, 10, 40, 40]}
            )
        assert err.value.status == 400 and "locked" in err.value.message
        await api.json(
            "POST", f"/api/sessions/{sid}/pins/p1/fix", json={"region": [60, 10, 60, 40]}
        )
        await editor.wait_for(lambda: len(editor.layers) == 1, timeout=30)
        layer = editor.layers[0]
        patch = decode(await api.blob(layer["patch"]), "RGBA")
        x = int(layer["box"][0])
        # Nothing left of x=80 may change.
        locked_cols = max(0, 80 - x)
        assert not patch[:, :locked_cols, 3].any()


@pytest.mark.parametrize(
    ("texts", "drafted"),
    [
        # Issue 11's thread: the mentions and the chatter go, the request stays.
        (
            ["backdrop.. Also ... @Ed.", "@Editor link can you take this one?"],
            "Backdrop",
        ),
        (
            ["a coffee stain on the jacket", "agreed, make the jacket plain", "on it", "thanks!"],
            "A coffee stain on the jacket. Make the jacket plain",
        ),
        (["can we change the color of the jacket?"], "Change the color of the jacket"),
        (["@Ana (client) the sky is too flat, please"], "The sky is too flat"),
        (["ok", "lgtm", "+1"], ""),
    ],
)
def test_the_drafted_prompt_is_what_to_make(texts: list[str], drafted: str) -> None:
    from proofroom.server.review.fix_request import MAX_DRAFT_CHARS, draft_from_texts

    assert draft_from_texts(texts) == drafted
    assert len(draft_from_texts(["make the sky bluer " * 40])) <= MAX_DRAFT_CHARS
