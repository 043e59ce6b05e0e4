"""The upscale engines on photographs: exact size, true to the source, alpha carried.

``resample`` runs everywhere. ``spandrel`` runs a tiny random Real-ESRGAN Compact (SRVGG)
model built from its config, saved as safetensors and loaded back through the same
detection path a downloaded model takes, on the CPU.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofroom.server.engines import EngineError, JobCancelled
from proofroom.server.engines.kinds import UpscaleParams
from proofroom.server.engines.registry import describe_engines, load_upscale_engine
from proofroom.server.engines.upscale.resample import ResampleEngine
from proofroom.server.settings import Settings

from . import requires
from .images import PHOTOS, photo


def _quiet(step: int, total: int, preview: np.ndarray | None) -> None:
    pass


def _params(image: np.ndarray, width: int, height: int, **kw: Any) -> UpscaleParams:
    return UpscaleParams(factor=width / image.shape[1], width=width, height=height, **kw)


def _downsample_error(result: np.ndarray, source: np.ndarray) -> float:
    """Mean absolute difference (levels) between an area-downsample of result and source."""
    h, w = source.shape[:2]
    down = cv2.resize(result, (w, h), interpolation=cv2.INTER_AREA)
    return float(np.abs(down.astype(np.float64) - source).mean())


def _soft_disc_alpha(height: int, width: int) -> np.ndarray:
    """An alpha channel: opaque disc, transparent corners, an 8-px soft edge between."""
    yy, xx = np.mgrid[:height, :width]
    r = np.hypot(yy - height / 2, xx - width / 2)
    edge = min(height, width) * 0.4
    return np.clip((edge - r) / 8 * 255, 0, 255).astype(np.uint8)


# -- resample -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resample() -> ResampleEngine:
    return ResampleEngine()


@pytest.mark.parametrize("name", PHOTOS)
@pytest.mark.parametrize("factor", [2.0, 4.0, 1.5])
def test_resample_is_exact_in_size_and_true_to_the_source(
    resample: ResampleEngine, name: str, factor: float
) -> None:
    source = photo(name)
    h, w = source.shape[:2]
    width, height = round(w * factor), round(h * factor)
    out = resample.upscale(source, _params(source, width, height), _quiet)
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    assert _downsample_error(out, source) < 1.0


def test_resample_hits_a_target_size_of_another_aspect(resample: ResampleEngine) -> None:
    source = photo("coffee")  # 600x400
    out = resample.upscale(source, _params(source, 1921, 1279), _quiet)
    assert out.shape == (1279, 1921, 3)
    assert _downsample_error(out, source) < 1.0


def test_resample_carries_alpha_without_inventing_it(resample: ResampleEngine) -> None:
    rgb = photo("astronaut")
    alpha = _soft_disc_alpha(*rgb.shape[:2])
    source = np.dstack([rgb, alpha])
    out = resample.upscale(source, _params(source, 2048, 2048), _quiet)
    assert out.shape == (2048, 2048, 4)
    # Coverage is where it was: fully opaque inside the disc, fully clear in the corners,
    # and the soft edge resampled, not sharpened into new values.
    assert _downsample_error(out[..., 3], alpha) < 1.0
    assert (out[1024 - 200 : 1024 + 200, 1024 - 200 : 1024 + 200, 3] == 255).all()
    assert (out[:100, :100, 3] == 0).all() and (out[-100:, -100:, 3] == 0).all()
    # The colour is the same as without alpha: it never leaks into the picture.
    plain = resample.upscale(rgb, _params(rgb, 2048, 2048), _quiet)
    assert np.array_equal(out[..., :3], plain)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    height=st.integers(1, 160),
    width=st.integers(1, 160),
    alpha=st.booleans(),
)
def test_resample_returns_exactly_the_size_asked_for(
    h: int, w: int, height: int, width: int, alpha: bool
) -> None:
    source = np.ascontiguousarray(photo("chelsea")[:h, :w])
    if alpha:
        source = np.dstack([source, np.full((h, w), 77, np.uint8)])
    out = ResampleEngine().upscale(source, _params(source, width, height), _quiet)
    assert out.shape == (height, width, source.shape[2]) and out.dtype == np.uint8
    if alpha:
        assert (out[..., 3] == 77).all()  # a flat alpha stays flat: nothing invented


def test_resample_refuses_what_is_not_an_image(resample: ResampleEngine) -> None:
    with pytest.raises(EngineError, match="uint8"):
        resample.upscale(np.zeros((8, 8, 3), np.float32), UpscaleParams(2, 16, 16), _quiet)
    with pytest.raises(EngineError, match="HxWx3 or HxWx4"):
        resample.upscale(np.zeros((8, 8), np.uint8), UpscaleParams(2, 16, 16), _quiet)
    with pytest.raises(EngineError, match="0x16"):
        resample.upscale(np.zeros((8, 8, 3), np.uint8), UpscaleParams(2, 0, 16), _quiet)


def test_resample_says_what_it_is(resample: ResampleEngine) -> None:
    assert resample.describe()["method"] == "Lanczos resample + mild sharpening"
    assert load_upscale_engine("resample").name == "resample"


def test_resample_reports_progress_and_stops_when_cancelled(resample: ResampleEngine) -> None:
    source = photo("rocket")
    seen: list[tuple[int, int, tuple[int, ...] | None]] = []
    resample.upscale(
        source,
        _params(source, 1280, 854),
        lambda s, t, p: seen.append((s, t, None if p is None else p.shape)),
    )
    assert seen[-1][:2] == (1, 1) and seen[-1][2] is not None and max(seen[-1][2]) <= 256

    def cancel(step: int, total: int, preview: np.ndarray | None) -> None:
        raise JobCancelled

    with pytest.raises(JobCancelled):
        resample.upscale(source, _params(source, 1280, 854), cancel)


# -- tiling ---------------------------------------------------------------------------------


def _local_model(scale: int) -> Callable[[np.ndarray], np.ndarray]:
    """A stand-in network with a 2-px receptive field: a 5x5 blur, then nearest x scale."""

    def run(window: np.ndarray) -> np.ndarray:
        blurred = cv2.blur(window, (5, 5), borderType=cv2.BORDER_REFLECT)
        h, w = window.shape[:2]
        grown = cv2.resize(blurred, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        return np.ascontiguousarray(grown.transpose(2, 0, 1))

    return run


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(20, 300),
    width=st.integers(20, 300),
    tile=st.integers(64, 200),
    scale=st.integers(1, 3),
    reuse=st.booleans(),
)
def test_tiles_blend_back_to_the_untiled_result(
    height: int, width: int, tile: int, scale: int, reuse: bool
) -> None:
    # Any grid (uneven tiles, one row, one column), any scale, a reused dirty canvas: where
    # the model's reach is within the margin, the seams leave no trace.
    from proofroom.server.engines.upscale import tiles

    image = photo("astronaut")[:height, :width].astype(np.float32)
    run = _local_model(scale)
    dirty = np.full((3, height * scale, width * scale), np.nan, np.float32)
    out = tiles.run_tiled(image, run, scale, tile, canvas=(lambda _: dirty) if reuse else None)
    assert np.abs(out - run(image)).max() < 0.01  # float rounding of the blur's sums


# -- spandrel -------------------------------------------------------------------------------

SCALE = 4


def _spandrel() -> Any:
    if importlib.util.find_spec("spandrel") is None or importlib.util.find_spec("torch") is None:
        requires.missing("spandrel and torch (scripts/setup dev installs them)")
    import torch

    from proofroom.server.engines.upscale.spandrel_import import import_spandrel

    import_spandrel()
    return torch


def _tiny_srvgg(seed: int = 0, red_shift: float = 0.0) -> dict[str, Any]:
    """A random Real-ESRGAN Compact x4 (16 features, 4 convs) state dict."""
    torch = _spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=SCALE)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if red_shift:
        # The last conv feeds the pixel shuffle: its first SCALE**2 channels become red.
        last = max(int(k.split(".")[1]) for k in state if k.startswith("body."))
        state[f"body.{last}.bias"][: SCALE**2] += red_shift
    return state


def _save(state: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_tiny_srvgg(), tmp_path_factory.mktemp("sr") / "tiny-compact-x4.safetensors")


@pytest.fixture(scope="module")
def engine(weights: Path) -> Any:
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    return SpandrelEngine(str(weights), device="cpu")


def _crop(name: str = "astronaut", h: int = 150, w: int = 190) -> np.ndarray:
    return np.ascontiguousarray(photo(name)[60 : 60 + h, 150 : 150 + w])


def test_spandrel_detects_the_architecture_from_safetensors(engine: Any) -> None:
    info = engine.describe()
    assert info["architecture_id"] == "Compact" and info["scale"] == SCALE
    assert info["dtype"] == "float32" and info["device"] == "cpu"  # float16 is for CUDA only


def test_spandrel_tiled_output_equals_the_untiled_one(engine: Any) -> None:
    source = _crop()
    h, w = source.shape[:2]
    whole = engine.upscale(source, _params(source, w * SCALE, h * SCALE, tile=512), _quiet)
    assert engine.last_details["tiles"] == 1
    steps: list[tuple[int, int]] = []
    tiled = engine.upscale(
        source,
        _params(source, w * SCALE, h * SCALE, tile=64),
        lambda s, t, p: steps.append((s, t)),
    )
    assert engine.last_details["tiles"] == 9  # 3 x 3 uneven tiles, seams both ways
    assert steps == [(i, 9) for i in range(1, 10)]
    assert tiled.shape == whole.shape == (h * SCALE, w * SCALE, 3)
    assert np.abs(tiled.astype(int) - whole).max() <= 1


def test_spandrel_keeps_the_source_colour(tmp_path: Path) -> None:
    from proofroom.server.engines.upscale import tiles
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    shifted = SpandrelEngine(
        str(_save(_tiny_srvgg(red_shift=0.15), tmp_path / "red.safetensors")), device="cpu"
    )
    source = _crop("coffee")
    h, w = source.shape[:2]
    raw = tiles.run_tiled(source.astype(np.float32) / 255, shifted._run, SCALE, 512)
    assert raw[0].mean() * 255 - source[..., 0].mean() > 20  # the model does shift red
    out = shifted.upscale(source, _params(source, w * SCALE, h * SCALE), _quiet)
    down = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)
    for channel in range(3):
        assert abs(down[..., channel].mean() - source[..., channel].mean()) < 0.5
    blur = lambda a: cv2.GaussianBlur(np.asarray(a, np.float64), (0, 0), 3)  # noqa: E731
    assert np.abs(blur(down) - blur(source)).mean() < 1.0


def test_spandrel_resizes_to_the_exact_size_when_the_model_scale_differs(engine: Any) -> None:
    source = _crop()
    h, w = source.shape[:2]
    out = engine.upscale(source, _params(source, 3 * w + 1, 3 * h - 1), _quiet)
    assert out.shape == (3 * h - 1, 3 * w + 1, 3)
    assert engine.last_details["resized_from"] == [w * SCALE, h * SCALE]
    assert _downsample_error(out, source) < 2.0


def test_spandrel_carries_alpha(engine: Any) -> None:
    rgb = _crop()
    alpha = _soft_disc_alpha(*rgb.shape[:2])
    h, w = rgb.shape[:2]
    out = engine.upscale(np.dstack([rgb, alpha]), _params(rgb, w * SCALE, h * SCALE), _quiet)
    assert out.shape == (h * SCALE, w * SCALE, 4)
    assert _downsample_error(out[..., 3], alpha) < 1.0
    assert out[0, 0, 3] == 0 and out[h * 2, w * 2, 3] == 255
    plain = engine.upscale(rgb, _params(rgb, w * SCALE, h * SCALE), _quiet)
    assert np.array_equal(out[..., :3], plain)


def test_spandrel_stops_when_cancelled(engine: Any) -> None:
    source = _crop()
    h, w = source.shape[:2]
    calls: list[int] = []

    def cancel(step: int, total: int, preview: np.ndarray | None) -> None:
        calls.append(step)
        raise JobCancelled

    with pytest.raises(JobCancelled):
        engine.upscale(source, _params(source, w * SCALE, h * SCALE, tile=64), cancel)
    assert calls == [1]


def test_spandrel_halves_the_tile_when_cuda_runs_out_of_memory(engine: Any) -> None:
    # A CUDA out-of-memory cannot happen on this CPU host: the model call raises torch's own
    # error for windows over 100 px, as a GPU with little memory left would.
    torch = _spandrel()
    source = _crop()
    h, w = source.shape[:2]
    whole = engine.upscale(source, _params(source, w * SCALE, h * SCALE), _quiet)
    real: Callable[[np.ndarray], np.ndarray] = engine._infer

    def small_gpu(window: np.ndarray) -> np.ndarray:
        if max(window.shape[:2]) > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(window)

    engine._infer = small_gpu
    try:
        out = engine.upscale(source, _params(source, w * SCALE, h * SCALE, tile=512), _quiet)
    finally:
        del engine._infer
    assert engine.last_details["tile"] == 64  # 512 -> 256 -> 128 -> 64 (+ margins <= 100)
    assert np.abs(out.astype(int) - whole).max() <= 1


def test_spandrel_refuses_nan_output(tmp_path: Path) -> None:
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    state = _tiny_srvgg()
    state["body.0.bias"][0] = float("nan")
    broken = SpandrelEngine(str(_save(state, tmp_path / "nan.safetensors")), device="cpu")
    source = _crop()
    with pytest.raises(EngineError, match="NaN"):
        broken.upscale(source, _params(source, 760, 600), _quiet)


def test_a_file_that_is_not_a_supported_model_is_refused_clearly(tmp_path: Path) -> None:
    torch = _spandrel()
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    foreign = _save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "foreign.safetensors")
    with pytest.raises(EngineError, match="not a model spandrel supports: UnsupportedModelError"):
        SpandrelEngine(str(foreign), device="cpu")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(EngineError, match=r"garbage\.safetensors is not a model spandrel supports"):
        SpandrelEngine(str(garbage), device="cpu")
    with pytest.raises(EngineError, match="no weights file"):
        SpandrelEngine(str(tmp_path / "missing.safetensors"), device="cpu")
    with pytest.raises(EngineError, match="not a weights file"):
        SpandrelEngine(str(tmp_path / "model.onnx"), device="cpu")
    assert 400 <= EngineError.status < 500


def test_a_pickled_pth_needs_the_admins_consent(tmp_path: Path) -> None:
    torch = _spandrel()
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    pth = tmp_path / "tiny-compact-x4.pth"
    torch.save(_tiny_srvgg(), pth)
    with pytest.raises(EngineError, match="PROOFROOM_ALLOW_PICKLED_WEIGHTS=on"):
        SpandrelEngine(str(pth), Settings(), device="cpu")
    allowed = SpandrelEngine(str(pth), Settings(allow_pickled_weights="on"), device="cpu")
    assert allowed.describe()["architecture_id"] == "Compact"
    with pytest.raises(ValueError, match="PROOFROOM_ALLOW_PICKLED_WEIGHTS"):
        Settings(allow_pickled_weights="yes please")


def test_the_models_offered_are_the_ones_the_admin_lists(tmp_path: Path, weights: Path) -> None:
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "b.safetensors").write_bytes(b"")
    (folder / "a.pth").write_bytes(b"")
    (folder / "notes.txt").write_text("not a model")
    listed = Settings(upscale_models=f"{weights}, {folder}")
    assert SpandrelEngine.configured_models(listed) == (str(weights), str(folder / "b.safetensors"))
    consenting = listed.replace(allow_pickled_weights="on")
    assert SpandrelEngine.configured_models(consenting)[1:] == (
        str(folder / "a.pth"),
        str(folder / "b.safetensors"),
    )
    info = {e.name: e for e in describe_engines(Settings(), kind="upscale")}
    assert info["spandrel"].unavailable == "no weights file configured (PROOFROOM_UPSCALE_MODELS)"
    assert info["resample"].available
    info = {e.name: e for e in describe_engines(listed, kind="upscale")}
    assert info["spandrel"].available and info["spandrel"].models[0] == str(weights)
    engine = load_upscale_engine("spandrel", None, Settings(upscale_models=str(weights)))
    assert engine.describe()["model"] == str(weights)


# -- refine (the tiny random diffusion pipeline: its detail is noise, its layout is kept) -----


@pytest.fixture(scope="module")
def refine(tiny_pipeline_dir: Path) -> Any:
    from proofroom.server.engines.upscale.refine import RefineEngine

    return RefineEngine(str(tiny_pipeline_dir), device="cpu")


def _blurred_error(result: np.ndarray, source: np.ndarray, sigma: float = 3.0) -> float:
    h, w = source.shape[:2]
    down = cv2.resize(result, (w, h), interpolation=cv2.INTER_AREA).astype(np.float64)
    blur = lambda a: cv2.GaussianBlur(np.asarray(a, np.float64), (0, 0), sigma)  # noqa: E731
    return float(np.abs(blur(down) - blur(source)).mean())


def test_refine_is_exact_tiled_seeded_and_keeps_the_colour(refine: Any) -> None:
    source = _crop(h=96, w=120)
    steps: list[tuple[int, int]] = []
    params = _params(source, 240, 192, prompt="a portrait", seed=3, tile=128)
    out = refine.upscale(source, params, lambda s, t, p: steps.append((s, t)))
    assert out.shape == (192, 240, 3) and out.dtype == np.uint8
    assert refine.last_details["tiles"] == 4 and refine.last_details["steps"] == 5
    assert steps[-1] == (20, 20) and [s for s, _ in steps] == sorted(s for s, _ in steps)
    assert _blurred_error(out, source) < 1.5  # the pass redrew detail, not the colours
    plain = ResampleEngine().upscale(source, params, _quiet)
    assert np.abs(out.astype(int) - plain).mean() > 1  # it did redraw
    assert np.array_equal(refine.upscale(source, params, _quiet), out)
    again = refine.upscale(source, _params(source, 240, 192, seed=4, tile=128), _quiet)
    assert not np.array_equal(again, out)


def test_refine_carries_alpha_and_refuses_bad_strength(refine: Any) -> None:
    rgb = _crop(h=64, w=64)
    alpha = _soft_disc_alpha(64, 64)
    out = refine.upscale(np.dstack([rgb, alpha]), _params(rgb, 128, 128), _quiet)
    assert out.shape == (128, 128, 4) and _downsample_error(out[..., 3], alpha) < 1.0
    with pytest.raises(EngineError, match="strength"):
        refine.upscale(rgb, _params(rgb, 128, 128, strength=0.01), _quiet)
    with pytest.raises(JobCancelled):
        refine.upscale(rgb, _params(rgb, 128, 128), lambda *_: (_ for _ in ()).throw(JobCancelled))
