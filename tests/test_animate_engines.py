"""The animate engines: camera moves, diffusers image-to-video, Veo through its stand-in.

Every clip is decoded back with PyAV, the way a reviewer's player would read it: frame
count, rate, size, codec, the first frame against the still, both renditions present. The
Veo engine runs through the real google-genai SDK against tests/veo_standin.py; the
diffusers engine loads a tiny Stable Video Diffusion pipeline (random weights, built from
configs) through the same ``from_pretrained(path)`` a real model takes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import cv2
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.responses import FileResponse, HTMLResponse
from starlette.routing import Route

from proofroom.server.engines.animate.camera import MOTIONS, CameraEngine, Rig
from proofroom.server.engines.animate.encode import read_frames
from proofroom.server.engines.animate.i2v import (
    FAMILIES,
    family_of,
    plan,
    round_frames,
    round_size,
)
from proofroom.server.engines.base import EngineError, JobCancelled
from proofroom.server.engines.kinds import ClipResult, ClipSpec

from .hosted_standin import Running
from .images import photo, sized
from .requires import require_module
from .veo_standin import VeoReply, VeoStandIn

VEO_KEY = "AIzaStandInVeoKey-0123456789abcdef"


def _ignore(step: int, total: int, preview: np.ndarray | None) -> None:
    pass


def _clip(tmp_path: Path, still: np.ndarray, name: str = "clip", **spec: Any) -> ClipResult:
    h, w = still.shape[:2]
    values: dict[str, Any] = {"seconds": 1.0, "fps": 12, "width": w, "height": h, **spec}
    return CameraEngine().animate(still, ClipSpec(**values), tmp_path / name, _ignore)


def _decoded(path: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        meta = {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "fps": float(stream.average_rate),
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
        }
    return list(read_frames(path)), meta


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


# -- camera: what comes out ------------------------------------------------------------


def test_a_clip_decodes_back_as_asked(tmp_path: Path) -> None:
    still = sized("coffee", 320, 180)
    steps: list[tuple[int, int]] = []
    result = CameraEngine().animate(
        still,
        ClipSpec(seconds=1.5, fps=16, width=320, height=180, motion="push-in"),
        tmp_path,
        lambda step, total, preview: steps.append((step, total)),
    )
    assert (result.frames, result.fps, result.width, result.height) == (24, 16, 320, 180)
    assert steps == [(i, 24) for i in range(1, 25)], "progress after every frame"
    for path, codec in ((result.mp4, "h264"), (result.webm, "vp9")):
        frames, meta = _decoded(path)
        assert meta == {
            "codec": codec,
            "pix_fmt": "yuv420p",
            "fps": 16.0,
            "width": 320,
            "height": 180,
        }
        assert len(frames) == 24
        # The clip opens on the still (only chroma subsampling and compression between).
        assert _psnr(frames[0], still) > 33, path.name
        assert np.abs(frames[0].astype(int) - still).mean() < 4
    data = result.mp4.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat"), "faststart: the index comes first"
    assert result.poster.shape == (180, 320, 3)
    assert np.array_equal(result.poster, still), "the poster is the first frame as rendered"
    assert result.details["motion"] == "push-in"
    assert result.details["encoding"]["mp4"]["encoder"] == "libx264"


@pytest.mark.parametrize("motion", ["push-in", "pan-left", "pan-right"])
def test_the_last_frame_is_the_camera_s_final_window(tmp_path: Path, motion: str) -> None:
    """A move is a window over the still that stays inside it: the last frame is that
    window of the still, scaled (no smeared or mirrored edges, nothing invented)."""
    still = sized("chelsea", 320, 180)
    result = _clip(tmp_path, still, motion=motion)
    last = list(read_frames(result.webm))[-1]
    rig = Rig(still, 320, 180, motion, ())
    window = rig.window(1.0)
    left = window.cx - window.width / 2
    height = window.width * 180 / 320
    top = window.cy - height / 2
    assert 0 <= left and left + window.width <= 320 + 1e-6
    assert 0 <= top and top + height <= 180 + 1e-6
    x0, y0 = math.ceil(left), math.ceil(top)
    x1, y1 = math.floor(left + window.width), math.floor(top + height)
    expected = cv2.resize(
        np.ascontiguousarray(still[y0:y1, x0:x1]), (320, 180), interpolation=cv2.INTER_CUBIC
    )
    assert _psnr(last[4:-4, 4:-4], expected[4:-4, 4:-4]) > 24
    if motion != "push-in":
        # The window travelled toward the side the pan names.
        assert (window.cx < 160) == (motion == "pan-left")
        assert abs(window.cx - 160) > 10


def test_parallax_moves_a_near_plane_further_and_leaves_no_double(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    still = cv2.resize(
        rng.integers(60, 200, (18, 32, 3), dtype=np.uint8), (320, 180), cv2.INTER_CUBIC
    )
    still[:, :, 2] = 40  # the background has little blue
    mask = np.zeros((180, 320), bool)
    mask[60:120, 130:190] = True
    still[mask] = (20, 40, 250)  # a blue card in front
    result = _clip(tmp_path, still, motion="parallax", planes=((mask, 1.0),), seconds=1.0, fps=12)
    first, last = list(read_frames(result.webm))[:: result.frames - 1]
    assert np.abs(first.astype(int) - still).mean() < 3

    def card(frame: np.ndarray) -> np.ndarray:
        return (frame[..., 2] > 180) & (frame[..., 0] < 90)

    _, xs = np.nonzero(card(last))
    # Where the card would be if it were painted on the background.
    rig = Rig(still, 320, 180, "parallax", ((mask, 1.0),))
    m = rig.window(1.0).matrix(320, 180)
    flat_x = m[0, 0] * 159.5 + m[0, 2]
    assert xs.mean() < flat_x - 4, "the near card moves further than the background"
    # One card, not two: what it uncovered is background, not a ghost of the card.
    zoom = m[0, 0] * (1 + 0.05)
    assert abs(card(last).sum() / (mask.sum() * zoom**2) - 1) < 0.15
    assert result.details["planes"] == 1


@pytest.mark.parametrize("motion", MOTIONS)
def test_the_same_still_and_parameters_give_the_same_clip(tmp_path: Path, motion: str) -> None:
    still = sized("astronaut", 192, 108)
    mask = np.zeros((108, 192), bool)
    mask[20:90, 70:130] = True
    spec: dict[str, Any] = {"motion": motion, "planes": ((mask, 0.8),), "seconds": 0.5}
    one = _clip(tmp_path, still, "one", **spec)
    two = _clip(tmp_path, still, "two", **spec)
    for a, b in ((one.mp4, two.mp4), (one.webm, two.webm)):
        frames_a, frames_b = list(read_frames(a)), list(read_frames(b))
        assert len(frames_a) == len(frames_b) == 6
        assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b, strict=True))
    assert np.array_equal(one.poster, two.poster)


def test_odd_sizes_are_rounded_to_even_and_said(tmp_path: Path) -> None:
    still = sized("rocket", 321, 181)
    result = _clip(tmp_path, still, seconds=0.25)
    assert (result.width, result.height) == (320, 180)
    _, meta = _decoded(result.mp4)
    assert (meta["width"], meta["height"]) == (320, 180)
    assert any("321x181 rounded to 320x180" in w for w in result.details["warnings"])


def test_a_larger_still_is_shrunk_once_not_aliased(tmp_path: Path) -> None:
    still = photo("astronaut")  # 512x512 into a 128x128 clip
    result = _clip(tmp_path, still, seconds=0.25, width=128, height=128)
    expected = cv2.resize(still, (128, 128), interpolation=cv2.INTER_AREA)
    assert _psnr(next(iter(read_frames(result.webm))), expected) > 30


def test_a_cancelled_clip_stops_and_leaves_no_files(tmp_path: Path) -> None:
    seen: list[int] = []

    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        seen.append(step)
        if step == 5:
            raise JobCancelled

    with pytest.raises(JobCancelled):
        CameraEngine().animate(
            sized("coffee", 320, 180), ClipSpec(2.0, 24, 320, 180), tmp_path, progress
        )
    assert seen == [1, 2, 3, 4, 5]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"motion": "orbit"}, "unknown motion 'orbit'"),
        ({"fps": 0}, "fps must be"),
        ({"seconds": -1.0}, "seconds must be positive"),
        ({"seconds": float("nan")}, "seconds must be positive"),
        ({"width": 1, "height": 1}, "at least 2x2"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(
    tmp_path: Path, spec: dict[str, Any], words: str
) -> None:
    values: dict[str, Any] = {"seconds": 1.0, "fps": 12, "width": 64, "height": 64, **spec}
    with pytest.raises(EngineError, match=words):
        CameraEngine().animate(sized("coffee", 64, 64), ClipSpec(**values), tmp_path, _ignore)


# -- a browser plays it ----------------------------------------------------------------


async def test_chromium_plays_the_clip_to_the_end(tmp_path: Path) -> None:
    playwright = require_module("playwright.async_api", "playwright (pip install -e '.[dev]')")
    from .browser.conftest import CHROMIUM, CHROMIUM_ARGS

    result = _clip(tmp_path, sized("coffee", 320, 180), seconds=1.0, fps=12)
    page_html = """<!doctype html><video id="webm" src="/clip.webm" muted playsinline
      preload="auto"></video><video id="mp4" src="/clip.mp4" muted playsinline
      preload="auto"></video>"""

    class Site:
        url = ""
        app = Starlette(
            routes=[
                Route("/", lambda request: HTMLResponse(page_html)),
                Route("/clip.webm", lambda request: FileResponse(result.webm)),
                Route("/clip.mp4", lambda request: FileResponse(result.mp4)),
            ]
        )

    played = {}
    with Running(Site()) as site:  # type: ignore[arg-type]
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(site.url + "/")
                for name in ("webm", "mp4"):
                    kind = "video/webm" if name == "webm" else "video/mp4"
                    if not await page.evaluate(
                        f"document.getElementById('{name}').canPlayType('{kind}')"
                    ):
                        continue
                    await page.evaluate(f"document.getElementById('{name}').play()")
                    await page.wait_for_function(
                        f"document.getElementById('{name}').ended", timeout=10_000
                    )
                    played[name] = await page.evaluate(
                        "(id) => { const v = document.getElementById(id);"
                        " return [v.duration, v.videoWidth, v.videoHeight]; }",
                        name,
                    )
            finally:
                await browser.close()
    assert "webm" in played, "Chromium plays the VP9/WebM rendition"
    for duration, width, height in played.values():
        assert (width, height) == (320, 180)
        assert abs(duration - 1.0) < 0.1


# -- Veo through its stand-in ----------------------------------------------------------


@pytest.fixture(scope="module")
def veo_standin() -> Iterator[VeoStandIn]:
    with Running(VeoStandIn()) as running:  # type: ignore[arg-type]
        yield running  # type: ignore[misc]


@pytest.fixture
def veo(veo_standin: VeoStandIn, monkeypatch: pytest.MonkeyPatch) -> Any:
    require_module("google.genai", "google-genai (pip install -e '.[hosted]')")
    from proofroom.server.engines.animate.veo import VeoEngine

    for name in ("GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_API_VERSION", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", VEO_KEY)
    monkeypatch.setenv("GOOGLE_VERTEX_BASE_URL", veo_standin.url)
    veo_standin.expect()
    settings = SimpleNamespace(
        hosted_timeout=5.0,
        hosted_attempts=3,
        hosted_backoff=0.01,
        hosted_max_retry_after=5.0,
        veo_poll_interval=0.02,
        veo_timeout=5.0,
    )
    return SimpleNamespace(
        standin=veo_standin,
        make=lambda **over: VeoEngine(None, SimpleNamespace(**{**settings.__dict__, **over})),
    )


def test_veo_makes_a_clip_through_the_sdk(veo: Any, tmp_path: Path) -> None:
    still = sized("coffee", 320, 180)
    veo.standin.expect(VeoReply(polls=2))
    result = veo.make().animate(
        still, ClipSpec(5.0, 24, 320, 180, prompt="steam rises"), tmp_path, _ignore
    )
    start = veo.standin.starts[0]
    assert start["instances"][0]["prompt"] == "steam rises"
    assert start["parameters"]["durationSeconds"] == 6, "5 s is not a Veo 3 length; 6 is"
    assert start["parameters"]["aspectRatio"] == "16:9"
    assert veo.standin.polls == 3
    assert (result.frames, result.fps, result.width, result.height) == (144, 24, 320, 180)
    for path in (result.mp4, result.webm):
        frames, meta = _decoded(path)
        assert len(frames) == 144 and (meta["width"], meta["height"]) == (320, 180)
        assert _psnr(frames[0], still) > 28, "Veo's clip opens on the still"
    assert result.details["polls"] == 3
    assert any("5 s asked" in w for w in result.details["warnings"])
    assert VEO_KEY not in json.dumps(result.details, default=str)
    assert veo.standin.headers[0]["x-goog-api-key"] == VEO_KEY


def test_veo_fits_its_frame_to_the_asked_size(veo: Any, tmp_path: Path) -> None:
    veo.standin.expect(VeoReply(polls=0, size=(320, 180)))
    result = veo.make().animate(
        sized("rocket", 200, 300), ClipSpec(4.0, 24, 200, 300), tmp_path, _ignore
    )
    assert veo.standin.starts[0]["parameters"]["aspectRatio"] == "9:16"
    assert (result.width, result.height) == (200, 300)
    _, meta = _decoded(result.webm)
    assert (meta["width"], meta["height"]) == (200, 300)
    assert any("fitted to 200x300" in w for w in result.details["warnings"])


def test_veo_retries_a_busy_start(veo: Any, tmp_path: Path) -> None:
    veo.standin.expect(VeoReply("busy", polls=0))
    result = veo.make().animate(
        sized("coffee", 64, 36), ClipSpec(4.0, 24, 64, 36), tmp_path, _ignore
    )
    assert len(veo.standin.starts) == 2
    assert result.details["calls"][0]["retries"][0]["status"] == 429


@pytest.mark.parametrize(
    ("reply", "error", "words"),
    [
        (VeoReply("error", polls=1), "HostedError", r"operation failed \(13\): Video generation"),
        (VeoReply("filtered", polls=0), "HostedRefused", "contains content we block"),
        (VeoReply("stored", polls=0), "HostedError", "gs://standin-bucket"),
        (VeoReply("corrupt", polls=0), "HostedError", "Veo's video cannot be"),
    ],
)
def test_a_failed_veo_operation_fails_the_job_clearly(
    veo: Any, tmp_path: Path, reply: VeoReply, error: str, words: str
) -> None:
    from proofroom.server.engines.hosted import calls

    veo.standin.expect(reply)
    with pytest.raises(getattr(calls, error), match=words) as caught:
        veo.make().animate(sized("coffee", 64, 36), ClipSpec(4.0, 24, 64, 36), tmp_path, _ignore)
    assert VEO_KEY not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_veo_operation_that_never_finishes_times_out(veo: Any, tmp_path: Path) -> None:
    from proofroom.server.engines.hosted.calls import HostedTimeout

    veo.standin.expect(VeoReply("never"))
    with pytest.raises(HostedTimeout, match=r"within 0.3 s"):
        veo.make(veo_timeout=0.3).animate(
            sized("coffee", 64, 36), ClipSpec(4.0, 24, 64, 36), tmp_path, _ignore
        )
    assert veo.standin.polls >= 2


def test_a_cancelled_veo_job_stops_polling(veo: Any, tmp_path: Path) -> None:
    veo.standin.expect(VeoReply("never"))
    calls = []

    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        calls.append(step)
        if len(calls) > 3:
            raise JobCancelled

    with pytest.raises(JobCancelled):
        veo.make().animate(sized("coffee", 64, 36), ClipSpec(4.0, 24, 64, 36), tmp_path, progress)
    polls = veo.standin.polls
    assert polls < 10


def test_veo_without_a_key_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from proofroom.server.engines.animate.veo import VeoEngine

    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    assert VeoEngine.availability() == (
        "no GEMINI_API_KEY (or GOOGLE_API_KEY, or GOOGLE_CLOUD_PROJECT)"
    )
    with pytest.raises(EngineError, match="cannot run here: no GEMINI_API_KEY"):
        VeoEngine()
    with pytest.raises(EngineError, match="unknown veo model 'veo-9'"):
        VeoEngine("veo-9")


# -- diffusers image-to-video ----------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "wanted", "frames"),
    [
        ("ltx", 96, 97),
        ("ltx", 1, 9),
        ("ltx", 1000, 257),
        ("wan", 64, 65),
        ("wan", 81, 81),
        ("cogvideox", 64, 65),
        ("cogvideox-1.0", 32, 49),
        ("svd", 28, 25),
        ("svd", 14, 14),
    ],
)
def test_frame_counts_round_to_what_each_model_makes(family: str, wanted: int, frames: int) -> None:
    assert round_frames(FAMILIES[family], wanted) == frames


@pytest.mark.parametrize(
    ("family", "asked", "drawn"),
    [
        ("ltx", (1280, 720), (832, 480)),
        ("ltx", (640, 360), (640, 352)),
        ("wan", (1280, 720), (848, 480)),
        ("cogvideox-1.0", (1280, 720), (720, 480)),
        ("svd", (1024, 576), (1024, 576)),
        ("svd", (1000, 562), (1024, 576)),
    ],
)
def test_sizes_round_to_what_each_model_draws(
    family: str, asked: tuple[int, int], drawn: tuple[int, int]
) -> None:
    assert round_size(FAMILIES[family], *asked) == drawn


def test_every_rounding_is_a_warning() -> None:
    todo = plan(FAMILIES["ltx"], ClipSpec(4.0, 30, 1281, 721, prompt="waves"))
    assert (todo["width"], todo["height"], todo["frames"], todo["fps"]) == (1280, 720, 97, 24)
    words = " | ".join(todo["warnings"])
    assert "1281x721 rounded to 1280x720" in words
    assert "4 s at LTX-Video's 24 fps is 96 frames" in words and "so 97" in words
    assert "30 fps asked" in words
    assert "draws 832x480" in words


def test_a_folder_that_is_not_image_to_video_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(EngineError, match="a WanPipeline, not an image-to-video pipeline"):
        family_of(tmp_path, "wan-t2v")
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(EngineError, match=r"model_index\.json cannot be read"):
        family_of(tmp_path, "broken")


def test_the_diffusers_engine_needs_a_configured_model() -> None:
    from proofroom.server.engines.animate.i2v import DiffusersVideoEngine

    reason = DiffusersVideoEngine.availability(SimpleNamespace(video_model=None))
    assert reason in (
        "no video model configured (--video-model)",
        "torch not installed",
        "diffusers not installed",
        "torch and diffusers not installed",
    )


@pytest.fixture(scope="module")
def tiny_svd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Stable Video Diffusion pipeline of random weights (~8 MB), saved as a real model."""
    torch = require_module("torch", "the diffusion extra (torch) is not installed")
    require_module("diffusers", "the diffusion extra (diffusers) is not installed")
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.set_num_threads(1)
    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        block_out_channels=(32, 64),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        layers_per_block=1,
        cross_attention_dim=32,
        transformer_layers_per_block=1,
        num_attention_heads=(2, 4),
        num_frames=8,
    )
    vae = AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        latent_channels=4,
        layers_per_block=1,
    )
    # SVD resizes the still to 224 px for its image encoder, whatever the encoder's size.
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    out = tmp_path_factory.mktemp("tiny-svd")
    pipe.save_pretrained(out)
    return out


# diffusers' Euler scheduler calls np.array on a tensor the NumPy 2 way torch does not take.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")
def test_a_tiny_svd_pipeline_makes_a_clip_through_the_real_loading_path(
    tiny_svd: Path, tmp_path: Path
) -> None:
    from proofroom.server.engines.animate.i2v import DiffusersVideoEngine

    engine = DiffusersVideoEngine(None, SimpleNamespace(video_model=str(tiny_svd)), steps=2)
    assert engine.describe()["pipeline"] == "StableVideoDiffusionPipeline"
    steps: list[int] = []
    result = engine.animate(
        sized("coffee", 130, 66),
        ClipSpec(2.0, 24, 130, 66, prompt="steam", seed=4),
        tmp_path,
        lambda step, total, preview: steps.append(step),
    )
    assert steps == [1, 2], "progress per denoising step"
    # 2 s at SVD's 7 fps is 14 frames; this UNet was made for 8.
    assert (result.frames, result.fps, result.width, result.height) == (8, 7, 130, 66)
    for path in (result.mp4, result.webm):
        frames, meta = _decoded(path)
        assert len(frames) == 8 and (meta["width"], meta["height"]) == (130, 66)
    words = " | ".join(result.details["warnings"])
    assert "so 8 (1.14 s)" in words and "draws 128x64" in words and "takes no prompt" in words

    def cancel(step: int, total: int, preview: np.ndarray | None) -> None:
        raise JobCancelled

    with pytest.raises(JobCancelled):
        engine.animate(sized("coffee", 130, 66), ClipSpec(1.0, 7, 130, 66), tmp_path / "c", cancel)
