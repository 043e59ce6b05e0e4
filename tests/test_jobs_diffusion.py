"""The job path with the real diffusion engine (a tiny pipeline on the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from proofroom.client import ApiClient, SessionClient

from .helpers import RunningServer, eventually, run_server
from .test_fixes import decode, photo_session


async def _pin(client: SessionClient, author: str) -> None:
    client.add_pin("p1", x=50, y=40, text="a white collar", author=author, region=[40, 30, 40, 32])
    await client.flush()


@pytest.fixture
async def diffusion_server(tmp_path: Path, tiny_pipeline_dir: Path) -> Any:
    async with run_server(
        tmp_path / "data", engine="diffusion", model=str(tiny_pipeline_dir)
    ) as server:
        yield server


async def test_progress_and_previews_reach_everyone(diffusion_server: RunningServer) -> None:
    server = diffusion_server
    assert server.services.engine.name == "diffusion"
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await _pin(editor, users["editor"])
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        steps_seen: list[float] = []
        previews: set[str] = set()

        def watch(_events: Any) -> None:
            for job in viewer.jobs.values():
                if job.get("status") == "running":
                    steps_seen.append(job.get("step", 0))
                if job.get("preview"):
                    previews.add(job["preview"])

        viewer.jobs.observe_deep(watch)
        reply = await api.json(
            "POST",
            f"/api/sessions/{sid}/pins/p1/fix",
            json={"prompt": "white collar", "steps": 12, "seed": 3},
        )
        [job_id] = reply["jobs"]
        await viewer.wait_for(lambda: len(viewer.layers) == 1, timeout=60)
        assert viewer.jobs[job_id]["step"] == viewer.jobs[job_id]["total"] == 12
        assert steps_seen == sorted(steps_seen) and max(steps_seen) > 0
        assert previews, "no live preview was published"
        preview = decode(await api.blob(next(iter(previews))))
        assert preview.ndim == 3 and max(preview.shape[:2]) <= 256
        layer = viewer.layers[0]
        params = layer["params"]
        assert params["engine"] == "diffusion" and params["device"] == "cpu"
        assert params["prompt"] == "white collar" and params["steps"] == 12
        base = decode(await api.blob(viewer.meta["base"]))
        patch = decode(await api.blob(layer["patch"]), "RGBA")
        x, y, w, h = (int(v) for v in layer["box"])
        outside = np.ones(base.shape[:2], dtype=bool)
        outside[30:62, 40:80] = False
        # alpha is zero wherever the mask is not: the fix cannot touch those pixels
        assert not patch[..., 3][outside[y : y + h, x : x + w]].any()


async def test_cancel_a_running_job_leaves_no_layer(diffusion_server: RunningServer) -> None:
    server = diffusion_server
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await _pin(editor, users["editor"])
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        reply = await api.json(
            "POST", f"/api/sessions/{sid}/pins/p1/fix", json={"steps": 150, "seed": 1}
        )
        [job_id] = reply["jobs"]
        await editor.wait_for(
            lambda: job_id in editor.jobs and editor.jobs[job_id].get("step", 0) >= 1, timeout=60
        )
        cancelled = await api.json("POST", f"/api/jobs/{job_id}/cancel")
        assert cancelled["status"] == "cancelled"
        await editor.wait_for(lambda: editor.jobs[job_id]["status"] == "cancelled", timeout=30)
        assert editor.jobs[job_id]["step"] < 150
        # The worker lives on: the next job runs to a layer.
        reply = await api.json(
            "POST", f"/api/sessions/{sid}/pins/p1/fix", json={"steps": 4, "seed": 2}
        )
        await editor.wait_for(lambda: len(editor.layers) == 1, timeout=60)
        assert editor.layers[0]["params"]["job"] == reply["jobs"][0]
        job = await api.json("GET", f"/api/jobs/{job_id}")
        assert job["status"] == "cancelled" and job["layer"] is None


async def test_out_of_memory_fails_the_job_and_the_worker_lives_on(
    diffusion_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    server = diffusion_server
    engine: Any = server.services.engine
    real_call = engine.pipe.__class__.__call__
    calls = {"n": 0}

    def exhausted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            # What CUDA raises when the card is full; it cannot happen on this CPU.
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(engine.pipe.__class__, "__call__", exhausted)
    sid, tokens, users = await photo_session(server)
    async with (
        server.client(sid, tokens["editor"]) as editor,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        await _pin(editor, users["editor"])
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
        [failing] = (await api.json("POST", f"/api/sessions/{sid}/pins/p1/fix", json={"steps": 4}))[
            "jobs"
        ]
        await editor.wait_for(
            lambda: failing in editor.jobs and editor.jobs[failing]["status"] == "failed",
            timeout=60,
        )
        assert "out of memory" in editor.jobs[failing]["error"].lower()
        [working] = (await api.json("POST", f"/api/sessions/{sid}/pins/p1/fix", json={"steps": 4}))[
            "jobs"
        ]
        await editor.wait_for(lambda: len(editor.layers) == 1, timeout=60)
        assert editor.jobs[working]["status"] == "done"


def test_serve_auto_picks_diffusion_when_a_model_is_given(tiny_pipeline_dir: Path) -> None:
    from proofroom.server.engines import choose_engine

    engine, reason = choose_engine("auto", str(tiny_pipeline_dir))
    assert engine.name == "diffusion" and "loaded" in reason
    engine, reason = choose_engine("auto", None)
    assert engine.name == "fill" and reason == "no model configured"
    engine, reason = choose_engine("auto", str(tiny_pipeline_dir.parent / "missing"))
    assert engine.name == "fill" and "unusable" in reason
