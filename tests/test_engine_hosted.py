"""The hosted edit engines (Gemini, OpenAI) through their real SDKs and the real compositing.

The SDKs talk to a loopback stand-in (tests/hosted_standin.py) that answers like the
vendors' models: the whole picture redrawn at the model's size, shifted, tinted, the edit
spilling past the mask; or a refusal, an error, garbage, silence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from proofroom.server.engines.base import EngineError, InpaintParams, JobCancelled
from proofroom.server.engines.compositing import apply_patch, run_fix

from .hosted_standin import PAINT, Reply, Running, StandIn, truth_map
from .images import photo
from .requires import require_module

require_module("google.genai", "google-genai (pip install -e '.[hosted]')")
require_module("openai", "openai (pip install -e '.[hosted]')")

from proofroom.server.engines.hosted.align import AlignmentError  # noqa: E402
from proofroom.server.engines.hosted.calls import (  # noqa: E402
    HostedError,
    HostedRefused,
    HostedTimeout,
    HostedUnavailable,
)
from proofroom.server.engines.hosted.gemini import GeminiEngine  # noqa: E402
from proofroom.server.engines.hosted.openai_images import OpenAIEngine  # noqa: E402

GEMINI_KEY = "AIzaStandInGeminiKey-0123456789abcdef"
OPENAI_KEY = "sk-standin-openai-key-0123456789abcdef"
SETTINGS = SimpleNamespace(
    hosted_timeout=10.0, hosted_attempts=3, hosted_backoff=0.01, hosted_max_retry_after=5.0
)
ENGINES = {"gemini": GeminiEngine, "openai": OpenAIEngine}
PROMPT = "replace the shuttle with a green patch"


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with Running(StandIn()) as running:
        yield running


@pytest.fixture
def env(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """The vendors' own variables, as a server's environment would hold them."""
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", standin.url)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", standin.url + "/v1")
    standin.expect()
    return standin


def _ellipse(shape: tuple[int, int], centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return ((xx - centre[0]) / axes[0]) ** 2 + ((yy - centre[1]) / axes[1]) ** 2 <= 1


PARENT = photo("astronaut")
#: The shuttle's nose, beside the astronaut's helmet: texture, edges and flat sky around it.
MASK = _ellipse(PARENT.shape[:2], (330, 250), (60, 45))


def _fix(engine: Any, mask: np.ndarray = MASK, prompt: str = PROMPT) -> tuple[np.ndarray, Any]:
    result = run_fix(PARENT, mask, engine, InpaintParams(prompt=prompt, seed=3), _ignore)
    return apply_patch(PARENT, result.patch, result.box), result


def _ignore(step: int, total: int, preview: Any) -> None:
    pass


def _core(mask: np.ndarray, pixels: int = 4) -> np.ndarray:
    import cv2

    k = 2 * pixels + 1
    return cv2.erode(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)


def _crop_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    from proofroom.server.engines.compositing import context_box

    ys, xs = np.nonzero(mask)
    part = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    return context_box(part, mask.shape[1], mask.shape[0])


# -- what a person sees: the edit lands inside the mask, aligned, without the cast ---------


@pytest.mark.parametrize("name", ENGINES)
def test_an_edit_is_aligned_uncast_and_inside_the_mask(env: StandIn, name: str) -> None:
    engine = ENGINES[name](None, SETTINGS)
    env.expect(Reply(shift=(1.6, -0.7), spill=6))
    out, result = _fix(engine)
    # Every pixel outside the mask is the parent's, though the model's paint spilled.
    assert np.array_equal(out[~MASK], PARENT[~MASK])
    # Inside, the model's paint without its cast (gain 1.07/0.97/0.9, offset 6/-2/4).
    core = np.median(out[_core(MASK)], axis=0)
    assert np.abs(core - np.array(PAINT)).max() <= 3, core
    # The warp found maps the crop onto the answer as the stand-in drew it.
    call = engine.last_call()
    x, y, w, h = result.crops[0]
    sent = call["frame"]["sent"]
    sx, sy = call["frame"]["scale"]
    to_frame = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    answer = call["alignment"]["answer"]
    truth = truth_map((sent[0], sent[1]), (answer[0], answer[1]), (1.6, -0.7)) @ to_frame
    found = np.array(call["alignment"]["warp"])
    ys, xs = np.nonzero(MASK[y : y + h, x : x + w])
    corners = np.array([[xs.min(), ys.min(), 1], [xs.max(), ys.max(), 1], [xs.min(), ys.max(), 1]])
    error = np.abs(corners @ truth.T - corners @ found.T).max() / min(truth[0, 0], truth[1, 1])
    assert error < 0.2, f"misaligned by {error:.3f} crop pixels"


@pytest.mark.parametrize(
    "reply",
    [
        Reply(paint=False),
        # Gains below 1 with offsets: a cast that clips the highlights would lose them for good.
        Reply(paint=False, shift=(7.3, 4.6), gain=(0.86, 0.95, 0.9), offset=(2, 8, 12)),
        Reply(paint=False, size=(700, 700)),
        Reply(paint=False, crop_to=(4, 3)),
    ],
    ids=["shifted", "far-and-strong-cast", "another-size", "another-aspect"],
)
def test_a_redraw_of_the_same_picture_matches_the_parent(env: StandIn, reply: Reply) -> None:
    """A model that redraws without changing anything: once aligned and uncast, the mask
    shows the parent again (a pixel of misalignment on this texture would show plainly)."""
    engine = GeminiEngine(None, SETTINGS)
    env.expect(reply)
    out, _ = _fix(engine)
    diff = out[MASK].astype(np.float64) - PARENT[MASK]
    assert np.abs(diff.mean(axis=0)).max() < 1.0, diff.mean(axis=0)  # no cast left
    assert np.abs(diff).mean() < 2.5, np.abs(diff).mean()  # aligned
    assert np.array_equal(out[~MASK], PARENT[~MASK])


def test_openai_redraw_matches_the_parent_too(env: StandIn) -> None:
    engine = OpenAIEngine(None, SETTINGS)
    env.expect(Reply(paint=False, shift=(-2.2, 3.4)))
    out, _ = _fix(engine)
    diff = out[MASK].astype(np.float64) - PARENT[MASK]
    assert np.abs(diff.mean(axis=0)).max() < 1.0
    assert np.abs(diff).mean() < 2.5


@pytest.mark.parametrize("name", ENGINES)
def test_no_unmasked_pixel_changes_for_random_masks(env: StandIn, name: str) -> None:
    """The property every engine keeps (tests/test_engines_unmasked.py), here for the
    hosted ones: random masks on real photographs, through run_fix; a mask that leaves too
    little of its crop to align by fails clearly instead, and that must stay the exception."""
    from hypothesis import HealthCheck, given, settings

    from .test_compositing import assert_only_the_mask_changes, photo_and_mask

    engine = ENGINES[name](None, SETTINGS)
    outcomes: list[str] = []

    @settings(
        max_examples=6,  # each example is one to four model calls through the SDK
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(case=photo_and_mask())
    def check(case: tuple[np.ndarray, np.ndarray]) -> None:
        parent, mask = case
        env.expect()
        try:
            assert_only_the_mask_changes(parent, mask, engine)
        except AlignmentError as exc:
            assert "nothing was composited" in exc.message or "too little" in exc.message
            outcomes.append("unaligned")
        else:
            outcomes.append("fixed")

    check()
    assert outcomes.count("fixed") >= len(outcomes) // 2, outcomes


# -- what is sent ------------------------------------------------------------------------


def test_gemini_gets_the_crop_the_mask_and_the_edit_in_words(env: StandIn) -> None:
    engine = GeminiEngine("gemini-3-pro-image-preview", SETTINGS)
    _fix(engine)
    (seen,) = env.seen
    assert seen.path.endswith("/models/gemini-3-pro-image-preview:generateContent")
    assert seen.headers["x-goog-api-key"] == GEMINI_KEY
    parts = seen.body["contents"][0]["parts"]
    text = parts[0]["text"]
    assert PROMPT in text and "Keep every other pixel" in text and "second image" in text
    crop, mask = seen.images
    assert crop.shape[:2] == mask.shape[:2] and max(crop.shape[:2]) == 1024
    config = seen.body["generationConfig"]
    assert config["responseModalities"] == ["TEXT", "IMAGE"]
    assert config["imageConfig"]["aspectRatio"] == "1:1"
    # The white part of the mask picture is where the crop's mask is (the crop's middle).
    _, xs = np.nonzero(mask > 127)
    assert 0.2 < xs.min() / mask.shape[1] < 0.3 and 0.7 < xs.max() / mask.shape[1] < 0.8


def test_gemini_leaves_room_for_campaign_references(env: StandIn) -> None:
    from proofroom.server.engines.hosted.engine import Reference

    from .helpers import png_bytes

    engine = GeminiEngine(None, SETTINGS)
    crop, mask = PARENT[150:350, 230:430].copy(), MASK[150:350, 230:430].copy()
    reference = Reference(png=png_bytes(32, 32, (30, 160, 60)), role="the brand's green")
    fill = engine.inpaint(
        crop, mask, InpaintParams(prompt=PROMPT), _ignore, references=(reference,)
    )
    assert fill.shape == crop.shape and np.array_equal(fill[~mask], crop[~mask])
    (seen,) = env.seen
    assert len(seen.images) == 3 and seen.images[2].shape[:2] == (32, 32)
    texts = [p["text"] for p in seen.body["contents"][0]["parts"] if "text" in p]
    assert "campaign references" in texts[0] and "the brand's green" in texts[1]


def test_openai_gets_a_mask_whose_alpha_is_zero_where_to_edit(env: StandIn) -> None:
    engine = OpenAIEngine("gpt-image-1", SETTINGS)
    _fix(engine)
    (seen,) = env.seen
    assert seen.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert seen.body["model"] == "gpt-image-1" and seen.body["size"] == "1024x1024"
    image, mask = seen.images
    assert image.shape == mask.shape == (1024, 1024, 4)
    edit = mask[..., 3] == 0
    assert set(np.unique(mask[..., 3])) == {0, 255}
    assert 0.05 < edit.mean() < 0.3  # the ellipse, not the whole crop


def test_a_fix_of_two_crops_keeps_each_calls_provenance(env: StandIn) -> None:
    engine = OpenAIEngine(None, SETTINGS)
    mask = MASK | _ellipse(PARENT.shape[:2], (120, 420), (30, 40))
    out, result = _fix(engine, mask)
    assert len(result.crops) == 2 and np.array_equal(out[~mask], PARENT[~mask])
    calls = engine.last_calls(len(result.crops))
    assert len(calls) == 2 and len(env.seen) == 2
    assert calls[0]["frame"] != calls[1]["frame"]
    assert all(c["usage"]["total_tokens"] == 5560 for c in calls)


def test_usage_and_model_version_are_in_the_provenance(env: StandIn) -> None:
    gemini = GeminiEngine(None, SETTINGS)
    _fix(gemini)
    call = gemini.last_call()
    assert call["model_version"] == "gemini-2.5-flash-image-standin-001"
    assert call["usage"]["total_tokens"] == 2580 and call["attempts"] == 1
    assert gemini.describe()["sdk"].startswith("google-genai ")
    openai = OpenAIEngine(None, SETTINGS)
    _fix(openai)
    call = openai.last_call()
    assert call["model_version"] == "gpt-image-1" and call["usage"]["total_tokens"] == 5560
    json.dumps(call)  # provenance is stored in the document: JSON only


# -- bad input, each its own clear failure ----------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_no_key_says_so(env: StandIn, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    cls = ENGINES[name]
    want = "no GEMINI_API_KEY" if name == "gemini" else "no OPENAI_API_KEY"
    assert cls.availability(SETTINGS) == want
    with pytest.raises(EngineError, match=want):
        cls(None, SETTINGS)


def test_google_api_key_works_as_the_sdk_defines_it(
    env: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", GEMINI_KEY)
    assert GeminiEngine.availability(SETTINGS) is None
    _fix(GeminiEngine(None, SETTINGS))
    assert env.seen[0].headers["x-goog-api-key"] == GEMINI_KEY


def test_a_missing_sdk_says_which(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GeminiEngine, "sdk_module", "proofroom_no_such_sdk.genai")
    assert GeminiEngine.availability(SETTINGS) == "google-genai not installed"


def test_an_unknown_model_lists_the_models(env: StandIn) -> None:
    with pytest.raises(EngineError, match=r"gemini-2\.5-flash-image"):
        GeminiEngine("gemini-9-ultra", SETTINGS)


@pytest.mark.parametrize(
    ("name", "reply", "error", "words"),
    [
        ("gemini", Reply(kind="no_image"), HostedRefused, "no image"),
        ("openai", Reply(kind="no_image"), HostedRefused, "no image"),
        ("gemini", Reply(kind="text_only"), HostedRefused, "I can't edit this picture"),
        ("gemini", Reply(kind="safety"), HostedRefused, "IMAGE_SAFETY.*withheld by Google"),
        ("gemini", Reply(kind="blocked"), HostedRefused, "PROHIBITED_CONTENT.*was blocked"),
        ("openai", Reply(kind="safety"), HostedRefused, "rejected by the safety system"),
        ("gemini", Reply(kind="corrupt"), HostedError, "not a picture"),
        ("openai", Reply(kind="corrupt"), HostedError, "not a picture"),
        ("gemini", Reply(kind="other_scene"), AlignmentError, "nothing was composited"),
        ("openai", Reply(kind="other_scene"), AlignmentError, "nothing was composited"),
        ("gemini", Reply(crop_to=(21, 9)), AlignmentError, "does not show the whole"),
        ("gemini", Reply(kind="error", status=400), HostedError, "rejected the request"),
        ("gemini", Reply(kind="garbled"), HostedError, "could not be read"),
        ("openai", Reply(kind="garbled"), HostedError, "could not be read|unexpected shape"),
    ],
    ids=[
        "gemini-no-image",
        "openai-no-image",
        "gemini-text-only",
        "gemini-image-safety",
        "gemini-prompt-blocked",
        "openai-moderation",
        "gemini-corrupt",
        "openai-corrupt",
        "gemini-unalignable",
        "openai-unalignable",
        "gemini-mask-cropped-away",
        "gemini-bad-request",
        "gemini-garbled",
        "openai-garbled",
    ],
)
def test_a_bad_answer_fails_the_job_clearly(
    env: StandIn, name: str, reply: Reply, error: type[Exception], words: str
) -> None:
    engine = ENGINES[name](None, SETTINGS)
    env.expect(reply)
    with pytest.raises(error, match=words):
        _fix(engine)
    assert len(env.seen) == 1  # none of these is worth another try


@pytest.mark.parametrize("name", ENGINES)
def test_too_slow_times_out(env: StandIn, name: str) -> None:
    settings = SimpleNamespace(hosted_timeout=1.0, hosted_attempts=3, hosted_backoff=0.01)
    engine = ENGINES[name](None, settings)
    env.expect(Reply(delay=4.0))
    with pytest.raises(HostedTimeout, match="did not answer within 1 s"):
        _fix(engine)
    assert len(env.seen) == 1


@pytest.mark.parametrize("name", ENGINES)
def test_429_then_success_waits_as_asked(env: StandIn, name: str) -> None:
    engine = ENGINES[name](None, SETTINGS)
    env.expect(Reply(kind="error", status=429, retry_after="1"), Reply())
    out, _ = _fix(engine)
    assert np.array_equal(out[~MASK], PARENT[~MASK])
    call = engine.last_call()
    assert call["attempts"] == 2
    assert call["retries"] == [{"status": 429, "wait_s": 1.0, "why": "the server's Retry-After"}]


def test_gemini_retry_delay_is_honoured_without_a_header(env: StandIn) -> None:
    engine = GeminiEngine(None, SETTINGS)
    env.expect(Reply(kind="error", status=429), Reply())
    _fix(engine)
    assert engine.last_call()["retries"][0]["wait_s"] == 0.05


def test_a_retry_after_beyond_the_limit_fails_now(env: StandIn) -> None:
    engine = OpenAIEngine(None, SETTINGS)
    env.expect(Reply(kind="error", status=429, retry_after="3600"))
    with pytest.raises(HostedUnavailable, match="retry after 3600 s"):
        _fix(engine)
    assert len(env.seen) == 1


@pytest.mark.parametrize("name", ENGINES)
def test_500_three_times_gives_up(env: StandIn, name: str) -> None:
    engine = ENGINES[name](None, SETTINGS)
    env.expect(*[Reply(kind="error", status=500)] * 3, Reply())
    with pytest.raises(HostedUnavailable, match=r"failed 3 times.*500"):
        _fix(engine)
    assert len(env.seen) == 3


def test_cancel_stops_waiting_for_the_model(env: StandIn) -> None:
    engine = GeminiEngine(None, SETTINGS)
    env.expect(Reply(delay=5.0))
    calls = []

    def progress(step: int, total: int, preview: Any) -> None:
        calls.append(step)
        if len(calls) > 1:  # the first call is the job starting; then it is cancelled
            raise JobCancelled("j_test")

    with pytest.raises(JobCancelled):
        run_fix(PARENT, MASK, engine, InpaintParams(prompt=PROMPT), progress)


# -- keys stay in the server's environment ---------------------------------------------------


def test_keys_never_reach_logs_errors_or_provenance(
    env: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts = []
    for name, cls in ENGINES.items():
        engine = cls(None, SETTINGS)
        env.expect()
        _, result = _fix(engine)
        texts += [json.dumps(result.details), json.dumps(engine.describe())]
        texts.append(json.dumps(engine.last_call()))
        key = GEMINI_KEY if name == "gemini" else OPENAI_KEY
        for reply in (
            Reply(kind="error", status=401, echo_key=key),
            Reply(kind="error", status=500),
            Reply(kind="safety"),
        ):
            env.expect(*[reply] * 3)
            with pytest.raises(EngineError) as failed:
                _fix(engine)
            texts.append(failed.value.message)
            texts.append(json.dumps(engine.last_call()))
    texts.append(caplog.text)
    assert any("[redacted]" in t for t in texts)  # the echoed key was there, and blanked
    for text in texts:
        assert GEMINI_KEY not in text and OPENAI_KEY not in text


# -- through the server: a job, its layer's provenance, a refusal, the document ---------------


async def test_a_hosted_fix_through_the_server_keeps_the_key_out_of_everything(
    env: StandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from proofroom.client import ApiClient

    from .helpers import eventually, run_server
    from .test_fixes import photo_session

    caplog.set_level(logging.DEBUG)
    async with run_server(tmp_path / "data") as server:
        sid, tokens, users = await photo_session(server)
        async with (
            server.client(sid, tokens["editor"]) as editor,
            ApiClient(server.url, tokens["editor"]) as api,
        ):
            editor.add_pin(
                "p1", x=50, y=40, text="the patch", author=users["editor"], region=[40, 30, 30, 24]
            )
            await editor.flush()
            await eventually(lambda: "p1" in server.services.rooms.rooms[sid].pins)
            url = f"/api/sessions/{sid}/pins/p1/fix"
            await api.json("POST", url, json={"engine": "gemini", "prompt": "a green patch"})
            await editor.wait_for(lambda: len(editor.layers) == 1, timeout=30)
            params = editor.layers[0]["params"]
            assert params["engine"] == "gemini" and params["model"] == "gemini-2.5-flash-image"
            [call] = params["calls"]  # one crop, one call
            assert call["model_version"] == "gemini-2.5-flash-image-standin-001"
            assert call["usage"]["total_tokens"] == 2580 and call["attempts"] == 1
            env.expect(Reply(kind="safety"))
            [job] = (await api.json("POST", url, json={"engine": "gemini"}))["jobs"]
            await editor.wait_for(
                lambda: (editor.jobs.get(job) or {}).get("status") == "failed", timeout=30
            )
            error = editor.jobs[job]["error"]
            assert "IMAGE_SAFETY" in error and "safety filters" in error
            env.expect(*[Reply(kind="error", status=401, echo_key=GEMINI_KEY)])
            [job] = (await api.json("POST", url, json={"engine": "gemini"}))["jobs"]
            await editor.wait_for(
                lambda: (editor.jobs.get(job) or {}).get("status") == "failed", timeout=30
            )
            assert "[redacted]" in editor.jobs[job]["error"]
            listing = json.dumps(await api.json("GET", "/api/engines"))
        document = server.services.rooms.rooms[sid].doc.get_update()
    for text in (listing, caplog.text, json.dumps(params)):
        assert GEMINI_KEY not in text
    assert GEMINI_KEY.encode() not in document


def test_the_sdks_load_only_when_a_hosted_engine_calls() -> None:
    """Listing the engines (and checking their keys) imports neither vendor's SDK."""
    import subprocess
    import sys

    code = (
        "import sys; from proofroom.server.engines import registry;"
        "registry.describe_engines();"
        "print(sorted(m for m in ('google.genai', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ENGINES)
def test_an_unreachable_vendor_is_retried_then_named(
    env: StandIn, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", dead)
    monkeypatch.setenv("OPENAI_BASE_URL", dead + "/v1")
    engine = ENGINES[name](None, SETTINGS)
    with pytest.raises(HostedUnavailable, match=r"failed 3 times.*(ConnectError|connection)"):
        _fix(engine)
    assert engine.last_call()["attempts"] == 3
