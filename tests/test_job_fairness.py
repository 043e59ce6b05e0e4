"""Priority orders jobs within a session only, and a session may queue only so many
(issue 10 item 10): through the real server, queue, worker and classical engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from proofroom.client import ApiClient, ApiError
from proofroom.server.jobs import Job
from proofroom.server.settings import Settings

from .helpers import ReviewSession, RunningServer, eventually, run_server


async def pin_in(server: RunningServer, session: ReviewSession) -> None:
    async with server.client(session.id, session.tokens["editor"]) as editor:
        editor.add_pin("p", x=5, y=5, text="fix", author=session.users["editor"])
        await editor.flush()
        await eventually(lambda: "p" in server.services.rooms.rooms[session.id].pins)


async def ask(server: RunningServer, session: ReviewSession, **body: Any) -> list[str]:
    async with ApiClient(server.url, session.tokens["editor"]) as api:
        reply = await api.json(
            "POST", f"/api/sessions/{session.id}/pins/p/fix", json={"region": [1, 1, 8, 8], **body}
        )
    return list(reply["jobs"])


async def test_one_sessions_urgent_flood_does_not_hold_up_another_session(
    tmp_path: Path,
) -> None:
    async with run_server(tmp_path / "data") as server:
        flood, single = await server.new_session(), await server.new_session()
        await pin_in(server, flood)
        await pin_in(server, single)
        worker, queue = server.services.worker, server.services.queue
        assert worker is not None
        claims: list[Job] = []
        claim = queue.claim

        async def recording_claim(
            owner: str, lease_seconds: float, lane: str = "local"
        ) -> Job | None:
            job = await claim(owner, lease_seconds, lane)
            if job is not None:
                claims.append(job)
            return job

        queue.claim = recording_claim  # type: ignore[method-assign]
        async with worker.device:  # the worker takes a job, then waits for its device
            flooded = []
            for _ in range(3):
                flooded += await ask(server, flood, variants=8, priority=10, steps=1)
            [lonely] = await ask(server, single, priority=-10, steps=1)
            await eventually(lambda: len(claims) == 1)  # taken, waiting for the device
            order = [job.id for job in await queue.queued()]
        await eventually(lambda: len(claims) == 25, timeout=60)
        claimed = [job.id for job in claims]
        # The flood's first job was taken while the rest were queued; the other session's
        # one job goes next, whatever the priorities, and then the flood in its own order.
        assert claimed == [flooded[0], lonely, *flooded[1:]]
        assert order == claimed[1:]  # the queue positions said so too


async def test_the_per_session_cap_is_a_429_and_queues_nothing(tmp_path: Path) -> None:
    async with run_server(tmp_path / "data", max_queued_jobs_per_session=10) as server:
        busy, other = await server.new_session(), await server.new_session()
        await pin_in(server, busy)
        await pin_in(server, other)
        worker = server.services.worker
        assert worker is not None
        async with worker.device:
            first = await ask(server, busy, variants=8)
            with pytest.raises(ApiError) as err:
                await ask(server, busy, variants=3)
            assert err.value.status == 429
            assert "8 unfinished jobs" in err.value.message and "at most 10" in err.value.message
            # Nothing of the refused request: no jobs, no entries in the document, no audit.
            rows = await server.services.db.fetchall(
                "SELECT id FROM jobs WHERE session_id = ?", (busy.id,)
            )
            assert {r["id"] for r in rows} == set(first)
            room = server.services.rooms.rooms[busy.id]
            assert set(room.jobs.keys()) == set(first)
            requests = [
                e
                for e in await server.services.records.audit_events(busy.id)
                if e["action"] == "fix.request"
            ]
            assert [e["detail"]["jobs"] for e in requests] == [first]
            # What fits still fits, and another session has its own allowance.
            assert len(await ask(server, busy, variants=2)) == 2
            assert len(await ask(server, other, variants=8)) == 8


def test_the_cap_is_a_setting_with_its_environment_variable() -> None:
    assert Settings().max_queued_jobs_per_session == 32
    environ = {"PROOFROOM_MAX_QUEUED_JOBS_PER_SESSION": "5"}
    assert Settings.from_env(environ).max_queued_jobs_per_session == 5
