"""Engines per request through the real server: ``GET /api/engines``, choosing an engine
and a model, what is refused (and how it says why), job kinds, and hosted jobs running
beside the local worker."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from proofroom.client import ApiClient, ApiError
from proofroom.server.engines import Engine, InpaintParams, ProgressFn, registry
from proofroom.shared.enums import EditEngine

from .helpers import RunningServer, eventually, run_server
from .test_fixes import photo_session

VENDOR_KEYS = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")


@pytest.fixture
async def auto_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    """A server on its real defaults (``--engine auto``, no model, no vendor keys)."""
    for key in VENDOR_KEYS:
        monkeypatch.delenv(key, raising=False)
    async with run_server(tmp_path / "data", engine="auto") as server:
        yield server


async def _pinned(server: RunningServer, text: str = "remove the patch on the suit") -> Any:
    sid, tokens, users = await photo_session(server)
    async with server.client(sid, tokens["editor"]) as editor:
        editor.add_pin("p1", x=50, y=40, text=text, author=users["editor"], region=[40, 30, 30, 24])
        await editor.flush()
        await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
    return sid, tokens, users


def test_the_registry_knows_every_engine_of_the_contract() -> None:
    assert set(registry.ENGINES["edit"]) == {e.value for e in EditEngine}
    assert registry.DEFAULTS["edit"] == "fill"


async def test_the_listing_says_what_runs_here_and_why_not(auto_server: RunningServer) -> None:
    server = auto_server
    _, tokens, _ = await _pinned(server)
    async with ApiClient(server.url, tokens["viewer"]) as api:
        listing = await api.json("GET", "/api/engines")
    assert listing["default"] == {"edit": "fill", "upscale": "resample", "animate": "camera"}
    engines = {e["name"]: e for e in listing["engines"] if e["kind"] == "edit"}
    others = {(e["kind"], e["name"]) for e in listing["engines"] if e["kind"] != "edit"}
    assert others == {
        ("upscale", "resample"),
        ("upscale", "spandrel"),
        ("upscale", "refine"),
        ("animate", "camera"),
        ("animate", "diffusers"),
        ("animate", "veo"),
    }
    assert set(engines) == {e.value for e in EditEngine}
    for engine in engines.values():
        assert engine["kind"] == "edit"
        assert engine["available"] is (engine["reason"] is None)
    fill, recolor = engines["fill"], engines["recolor"]
    assert fill["available"] and fill["params"] == ["seed"] and fill["models"] == []
    assert recolor["available"] and "color" in recolor["params"]
    assert "seed" not in recolor["params"]
    assert engines["classical"]["models"][0] == engines["classical"]["default_model"] == "ns"
    assert engines["diffusion"]["available"] is False
    assert (
        "model" in engines["diffusion"]["reason"] or "installed" in engines["diffusion"]["reason"]
    )
    for hosted in ("gemini", "openai"):
        assert engines[hosted]["hosted"] is True and engines[hosted]["available"] is False
        assert "API_KEY" in engines[hosted]["reason"] or "installed" in engines[hosted]["reason"]
    assert engines["gemini"]["models"][0] == "gemini-2.5-flash-image"
    async with ApiClient(server.url, None) as anonymous:
        with pytest.raises(ApiError) as err:
            await anonymous.json("GET", "/api/engines")
        assert err.value.status == 401


async def test_a_request_without_an_engine_gets_the_servers_default(
    auto_server: RunningServer,
) -> None:
    server = auto_server
    sid, tokens, _ = await _pinned(server)
    async with (
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        [job_id] = (await api.json("POST", f"/api/sessions/{sid}/pins/p1/fix", json={"seed": 3}))[
            "jobs"
        ]
        await viewer.wait_for(lambda: len(viewer.layers) == 1, timeout=30)
        job = viewer.jobs[job_id]
        assert job["kind"] == "edit" and job["engine"] == "fill"
        params = viewer.layers[0]["params"]
        assert params["engine"] == "fill" and params["kind"] == "edit" and params["seed"] == 3
        queued = await server.services.queue.get(job_id)
        assert queued is not None and queued.engine == "fill" and queued.kind == "edit"


async def test_a_request_names_its_engine_and_model(auto_server: RunningServer) -> None:
    server = auto_server
    sid, tokens, _ = await _pinned(server, "make the suit green")
    async with (
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        # The colour comes from the pin's words when the request names none.
        recolor = await api.json(
            "POST", f"/api/sessions/{sid}/pins/p1/fix", json={"engine": "recolor"}
        )
        classical = await api.json(
            "POST",
            f"/api/sessions/{sid}/pins/p1/fix",
            json={"engine": "classical", "model": "telea"},
        )
        await viewer.wait_for(lambda: len(viewer.layers) == 2, timeout=30)
        by_job = {lay["params"]["job"]: lay["params"] for lay in viewer.layers}
        [recolor_job], [classical_job] = recolor["jobs"], classical["jobs"]
        assert by_job[recolor_job]["engine"] == "recolor"
        assert by_job[recolor_job]["color"] == "#008000"
        assert by_job[classical_job]["engine"] == "classical"
        assert by_job[classical_job]["method"] == by_job[classical_job]["model"] == "telea"
        assert viewer.jobs[recolor_job]["engine"] == "recolor"


REFUSED = {
    "unknown_engine": (
        {"engine": "magic"},
        400,
        ["unknown engine 'magic'", "fill", "recolor", "gemini", "GET /api/engines"],
    ),
    "engine_not_text": ({"engine": 7}, 400, ["unknown engine '7'"]),
    "unknown_model": (
        {"engine": "classical", "model": "sd-inpaint"},
        400,
        ["unknown model 'sd-inpaint' for the classical engine", "ns", "telea"],
    ),
    "model_for_an_engine_without_models": (
        {"engine": "fill", "model": "big"},
        400,
        ["the fill engine takes no model"],
    ),
    "colour_for_an_engine_without_one": (
        {"engine": "fill", "color": "red"},
        400,
        ["the fill engine takes no color"],
    ),
    "recolor_without_a_colour": (
        {"engine": "recolor", "prompt": "make it nicer"},
        400,
        ["needs a colour", "color", "#2e7d32"],
    ),
    "recolor_unknown_colour_name": (
        {"engine": "recolor", "color": "blurple"},
        400,
        ["unknown colour 'blurple'", "CSS colour name"],
    ),
    "colour_not_text": ({"engine": "recolor", "color": 3}, 400, ["color must be"]),
    "hosted_without_a_key": (
        {"engine": "gemini"},
        422,
        ["gemini engine is not available on this server"],
    ),
    "diffusion_without_a_model": (
        {"engine": "diffusion"},
        422,
        ["diffusion engine is not available on this server"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_what_cannot_run_is_refused_saying_why(auto_server: RunningServer, case: str) -> None:
    server = auto_server
    body, status, says = REFUSED[case]
    sid, tokens, _ = await _pinned(server)
    async with ApiClient(server.url, tokens["editor"]) as api:
        with pytest.raises(ApiError) as err:
            await api.json("POST", f"/api/sessions/{sid}/pins/p1/fix", json=body)
    assert err.value.status == status, err.value.message
    for words in says:
        assert words in err.value.message
    assert await server.services.queue.queued() == []
    assert len(server.services.rooms.rooms[sid].jobs) == 0


# -- hosted jobs run beside the local worker -------------------------------------------------


class GatedHostedEngine(Engine):
    """Stands in for a vendor's API (none can be reached here): the call waits on a gate."""

    name: ClassVar[str] = "gated"
    params: ClassVar[frozenset[str]] = frozenset({"prompt"})
    hosted: ClassVar[bool] = True
    gate = threading.Event()
    calls: ClassVar[list[int]] = []

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "model": None}

    def inpaint(
        self, image: np.ndarray, mask: np.ndarray, params: InpaintParams, progress: ProgressFn
    ) -> np.ndarray:
        self.calls.append(params.seed)
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        progress(1, 1, None)
        return np.full_like(image, 7)


@pytest.fixture
async def hosted_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setitem(registry.ENGINES["edit"], "gated", f"{__name__}:GatedHostedEngine")
    GatedHostedEngine.gate.clear()
    GatedHostedEngine.calls.clear()
    async with run_server(tmp_path / "data", hosted_concurrency=2) as server:
        try:
            yield server
        finally:
            GatedHostedEngine.gate.set()


async def test_hosted_jobs_run_together_and_never_hold_the_local_worker(
    hosted_server: RunningServer,
) -> None:
    server = hosted_server
    sid, tokens, _ = await _pinned(server)
    async with (
        server.client(sid, tokens["viewer"]) as viewer,
        ApiClient(server.url, tokens["editor"]) as api,
    ):
        url = f"/api/sessions/{sid}/pins/p1/fix"
        hosted = await api.json("POST", url, json={"engine": "gated", "variants": 3, "seed": 10})
        first, second, third = hosted["jobs"]

        def status(job_id: str) -> Any:
            return viewer.jobs.get(job_id, {}).get("status")

        # Two hosted calls at once (the setting); the third waits for a slot, first in line
        # (its position counts hosted jobs only)...
        await viewer.wait_for(
            lambda: (
                status(first) == status(second) == "running"
                and status(third) == "queued"
                and viewer.jobs[third].get("position") == 1
            ),
            timeout=30,
        )
        # ...and a local job runs to its layer while both hosted calls are still out.
        [local] = (await api.json("POST", url, json={"engine": "classical"}))["jobs"]
        await viewer.wait_for(lambda: status(local) == "done", timeout=30)
        assert status(first) == status(second) == "running" and status(third) == "queued"
        assert sorted(GatedHostedEngine.calls) == [10, 11]
        GatedHostedEngine.gate.set()
        await viewer.wait_for(lambda: len(viewer.layers) == 4, timeout=30)
        assert {viewer.jobs[j]["engine"] for j in hosted["jobs"]} == {"gated"}
        lane = await server.services.queue.get(first)
        assert lane is not None and lane.lane == "hosted"


def test_the_engine_settings_are_checked_at_start() -> None:
    from proofroom.server.settings import Settings

    assert Settings.from_env({"PROOFROOM_HOSTED_CONCURRENCY": "3"}).hosted_concurrency == 3
    with pytest.raises(ValueError, match="PROOFROOM_HOSTED_CONCURRENCY"):
        Settings(hosted_concurrency=0)
    assert Settings.from_env({"PROOFROOM_ENGINE": "recolor"}).engine == "recolor"
    with pytest.raises(ValueError, match=r"PROOFROOM_ENGINE.*auto, fill, recolor"):
        Settings.from_env({"PROOFROOM_ENGINE": "magic"})
