"""kill -9 the server while a fix runs: after the restart the job completes, exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofroom.client import ApiClient, SessionClient

from .helpers import ADMIN_TOKEN, join_session
from .procs import ServerProcess
from .test_fixes import photo_png

pytestmark = pytest.mark.slow


async def test_a_job_killed_mid_run_completes_once_after_restart(
    tmp_path: Path, tiny_pipeline_dir: Path
) -> None:
    data = tmp_path / "data"
    args = ("--engine", "diffusion", "--model", str(tiny_pipeline_dir))
    env = {"OMP_NUM_THREADS": "1"}
    with ServerProcess(data, args=args, env=env) as first:
        await first.astart(timeout=90)
        async with ApiClient(first.url, ADMIN_TOKEN) as admin:
            created = await admin.create_session(photo_png(), title="crash")
        sid = created["id"]
        editor = (await join_session(first.url, created)).tokens["editor"]
        async with (
            SessionClient(first.url, sid, editor) as client,
            ApiClient(first.url, editor) as api,
        ):
            me = (await api.whoami())["user_id"]
            client.add_pin("p1", x=50, y=40, text="collar", author=me, region=[40, 30, 40, 32])
            await client.flush()
            # One viewer-side observation that the pin is stored: the fix endpoint needs it.
            async with SessionClient(first.url, sid, editor) as probe:
                assert "p1" in probe.pins
            [job_id] = (
                await api.json(
                    "POST", f"/api/sessions/{sid}/pins/p1/fix", json={"steps": 60, "seed": 5}
                )
            )["jobs"]
            await client.wait_for(
                lambda: job_id in client.jobs and client.jobs[job_id].get("step", 0) >= 2,
                timeout=90,
            )
            first.send_kill()
            await client.wait_for(lambda: client.closed is not None, timeout=30)
        first.kill()
    with ServerProcess(data, args=args, env=env) as second:
        await second.astart(timeout=90)
        async with SessionClient(second.url, sid, editor) as client:
            await client.wait_for(
                lambda: len(client.layers) >= 1 and client.jobs[job_id]["status"] == "done",
                timeout=120,
            )
            assert [layer["params"]["job"] for layer in client.layers] == [job_id]
            assert client.jobs[job_id]["layer"] == f"l_{job_id}"
            assert list(client.pins["p1"]["layers"]) == [f"l_{job_id}"]
        async with ApiClient(second.url, editor) as api:
            job = await api.json("GET", f"/api/jobs/{job_id}")
        assert job["status"] == "done" and job["attempts"] == 2
