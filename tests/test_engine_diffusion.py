"""The diffusion engine on the CPU, with a tiny pipeline loaded through ``from_pretrained``."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from proofroom.server.engines import EngineError, InpaintParams, JobCancelled, load_engine
from proofroom.server.engines.diffusion import DiffusionEngine
from proofroom.server.engines.latent_preview import SD_LATENT_RGB, latents_to_rgb, predicted_x0

from . import requires

SIDE = 256
STEPS = 6


@pytest.fixture(scope="module")
def engine(tiny_pipeline_dir: Path) -> DiffusionEngine:
    return DiffusionEngine(str(tiny_pipeline_dir), preview_every=0)


def _crop(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    mask = np.zeros((SIDE, SIDE), bool)
    mask[64:192, 80:160] = True
    return image, mask


def _quiet(step: int, total: int, preview: np.ndarray | None) -> None:
    pass


def _run(engine: DiffusionEngine, **params: object) -> np.ndarray:
    image, mask = _crop()
    kwargs = {"prompt": "a red apple", "steps": STEPS, "seed": 1, **params}
    return engine.inpaint(image, mask, InpaintParams(**kwargs), _quiet)  # type: ignore[arg-type]


def test_loads_from_a_saved_pipeline_and_describes_itself(engine: DiffusionEngine) -> None:
    info = engine.describe()
    assert info["engine"] == "diffusion"
    assert info["pipeline"] == "StableDiffusionInpaintPipeline"
    assert (info["device"], info["dtype"], info["compiled"]) == ("cpu", "float32", False)
    assert info["scheduler"] == "DDIMScheduler"
    assert info["bucket"] == engine.bucket == SIDE
    for library in ("diffusers", "torch", "transformers"):
        assert info[library]
    json.dumps(info)


def test_inpaint_returns_an_rgb_image_of_the_crop_size(engine: DiffusionEngine) -> None:
    out = _run(engine)
    assert out.shape == (SIDE, SIDE, 3)
    assert out.dtype == np.uint8


def test_a_seed_gives_the_same_image_and_another_seed_another(engine: DiffusionEngine) -> None:
    first, again, other = _run(engine, seed=7), _run(engine, seed=7), _run(engine, seed=8)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_progress_reports_every_step_with_a_preview(
    engine: DiffusionEngine,
) -> None:
    calls: list[tuple[int, int, np.ndarray | None]] = []
    image, mask = _crop()
    engine.inpaint(image, mask, InpaintParams(steps=STEPS), lambda *a: calls.append(a))
    assert [(s, t) for s, t, _ in calls] == [(i, STEPS) for i in range(1, STEPS + 1)]
    for _, _, preview in calls:
        # The whole crop, one pixel per latent cell.
        assert preview is not None
        assert preview.shape == (SIDE // 8, SIDE // 8, 3)
        assert preview.dtype == np.uint8
    assert not np.array_equal(calls[0][2], calls[-1][2])


def test_strength_below_one_runs_fewer_steps_and_says_so(engine: DiffusionEngine) -> None:
    totals: list[int] = []
    image, mask = _crop()
    params = InpaintParams(steps=10, strength=0.5)
    engine.inpaint(image, mask, params, lambda step, total, _: totals.append(total))
    assert totals == [5] * 5


def test_previews_are_throttled(tiny_pipeline_dir: Path) -> None:
    engine = DiffusionEngine(str(tiny_pipeline_dir), preview_every=3600)
    previews: list[np.ndarray | None] = []
    image, mask = _crop()
    engine.inpaint(image, mask, InpaintParams(steps=4), lambda s, t, p: previews.append(p))
    assert [p is not None for p in previews] == [True, False, False, False]


def test_cancelling_from_progress_stops_the_run(engine: DiffusionEngine) -> None:
    calls = 0

    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        nonlocal calls
        calls += 1
        if step == 2:
            raise JobCancelled

    image, mask = _crop()
    with pytest.raises(JobCancelled):
        engine.inpaint(image, mask, InpaintParams(steps=STEPS), progress)
    assert calls == 2
    assert _run(engine).shape == (SIDE, SIDE, 3)  # the engine still works


def test_running_out_of_memory_is_a_clear_error_and_the_engine_lives_on(
    engine: DiffusionEngine,
) -> None:
    import torch

    # The one way to make the real pipeline run out of memory on a CPU: raise it mid-run.
    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    image, mask = _crop()
    with pytest.raises(EngineError, match="ran out of memory"):
        engine.inpaint(image, mask, InpaintParams(steps=STEPS), progress)
    assert _run(engine).shape == (SIDE, SIDE, 3)


@pytest.mark.parametrize(
    ("shape", "mask_shape", "params", "message"),
    [
        ((SIDE, SIDE), (SIDE, SIDE - 8), {}, "differ in size"),
        ((SIDE, SIDE - 4), (SIDE, SIDE - 4), {}, "multiples of 8"),
        ((SIDE, SIDE), (SIDE, SIDE), {"strength": 0.05, "steps": 10}, "no step"),
        ((SIDE, SIDE), (SIDE, SIDE), {"steps": 0}, "at least 1"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    engine: DiffusionEngine,
    shape: tuple[int, int],
    mask_shape: tuple[int, int],
    params: dict[str, float],
    message: str,
) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    mask = np.ones(mask_shape, bool)
    with pytest.raises(EngineError, match=message):
        engine.inpaint(image, mask, InpaintParams(**params), _quiet)  # type: ignore[arg-type]


def test_the_registry_loads_it_by_name(tiny_pipeline_dir: Path) -> None:
    engine = load_engine("diffusion", str(tiny_pipeline_dir))
    assert engine.name == "diffusion"
    assert engine.describe()["model"] == str(tiny_pipeline_dir)


def test_a_cached_hub_id_loads_offline(
    tiny_pipeline_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    # The Hugging Face cache layout: refs/main names the snapshot that holds the files.
    repo = tmp_path / "models--proofroom--tiny-inpaint"
    shutil.copytree(tiny_pipeline_dir, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = DiffusionEngine("proofroom/tiny-inpaint")
    assert engine.describe()["model"] == "proofroom/tiny-inpaint"
    assert engine.bucket == SIDE


@pytest.mark.usefixtures("tiny_pipeline_dir")
@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("nobody-here/no-such-inpaint-model", "not in the Hugging Face cache"),
        ("no such model, not an id", "not a Hugging Face model id"),
        ("empty-dir", "not a diffusers pipeline folder"),
        ("file.safetensors", "is a file"),
        ("broken", "cannot load"),
    ],
)
def test_unusable_models_are_engine_errors(
    model: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "file.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text('{"_class_name": "NoSuchPipeline"}')
    with pytest.raises(EngineError, match=message):
        DiffusionEngine(model)


def test_importing_the_module_does_not_import_torch() -> None:
    code = (
        "import sys, proofroom.server.engines.diffusion;"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.timeout(600)
# torch's inductor imports modules that use its own deprecated APIs.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_compiled_unet_gives_the_same_image(
    tiny_pipeline_dir: Path, engine: DiffusionEngine
) -> None:
    compiled = DiffusionEngine(str(tiny_pipeline_dir), compile=True)
    assert compiled.describe()["compiled"] is True
    difference = np.abs(_run(compiled).astype(int) - _run(engine))
    assert difference.max() <= 2  # float reassociation, nothing more


# Euler's and DPM-Solver's set_timesteps call np.array on a torch tensor (numpy 2 deprecation).
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")
@pytest.mark.parametrize(
    "scheduler", ["PNDMScheduler", "EulerDiscreteScheduler", "DPMSolverMultistepScheduler"]
)
def test_other_schedulers_report_every_step_with_previews(
    tiny_pipeline_dir: Path, tmp_path: Path, scheduler: str
) -> None:
    # The same weights with the scheduler a real model folder might name instead of DDIM.
    folder = shutil.copytree(tiny_pipeline_dir, tmp_path / "model")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", scheduler]
    (folder / "model_index.json").write_text(json.dumps(index))
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    config.update(_class_name=scheduler, skip_prk_steps=True)  # as SD's PNDM config has it
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    engine = DiffusionEngine(str(folder), preview_every=0)
    assert engine.describe()["scheduler"] == scheduler
    calls: list[tuple[int, int, np.ndarray | None]] = []
    image, mask = _crop()
    out = engine.inpaint(image, mask, InpaintParams(steps=4), lambda *a: calls.append(a))
    assert out.shape == (SIDE, SIDE, 3)
    total = calls[0][1]
    assert [s for s, _, _ in calls] == list(range(1, total + 1))
    assert all(p is not None and p.shape == (SIDE // 8, SIDE // 8, 3) for _, _, p in calls)


@pytest.mark.usefixtures("tiny_pipeline_dir")
@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_predicted_x0_inverts_the_forward_process(kind: str) -> None:
    import torch
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler(prediction_type=kind)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 1, 4, 8, 8, generator=generator)
    t = 400
    alpha = scheduler.alphas_cumprod[t]
    sample = alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise
    output = {
        "epsilon": noise,
        "v_prediction": alpha.sqrt() * noise - (1 - alpha).sqrt() * x0,
        "sample": x0,
    }[kind]
    estimate = predicted_x0(scheduler, output, torch.tensor(t), sample)
    torch.testing.assert_close(estimate, x0, atol=1e-4, rtol=1e-4)


@pytest.mark.usefixtures("tiny_pipeline_dir")
def test_sigma_scaled_schedulers_leave_x0_to_the_scheduler() -> None:
    import torch
    from diffusers import EulerDiscreteScheduler

    latents = torch.zeros(1, 4, 8, 8)
    assert predicted_x0(EulerDiscreteScheduler(), latents, torch.tensor(10), latents) is None


@pytest.mark.usefixtures("tiny_pipeline_dir")
def test_latents_to_rgb_maps_zero_to_grey() -> None:
    import torch

    factors = torch.tensor(SD_LATENT_RGB)
    rgb = latents_to_rgb(torch.zeros(2, 4, 8, 6), factors)
    assert rgb.shape == (8, 6, 3)
    assert rgb.dtype == np.uint8
    assert (rgb == 127).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "nonsense"}, "unknown device"),
        ({"dtype": "int4"}, "unknown dtype"),
        ({"device": "cuda"}, "no CUDA device"),
    ],
)
def test_bad_options_are_engine_errors(
    tiny_pipeline_dir: Path, options: dict[str, str], message: str
) -> None:
    import torch

    if options.get("device") == "cuda" and torch.cuda.is_available():
        requires.not_applicable("a GPU is here, so CUDA is no error")
    with pytest.raises(EngineError, match=message):
        DiffusionEngine(str(tiny_pipeline_dir), **options)  # type: ignore[arg-type]


def test_a_dropped_engine_frees_its_model_without_the_garbage_collector(
    tiny_pipeline_dir: Path,
) -> None:
    engine = DiffusionEngine(str(tiny_pipeline_dir))
    _run(engine)
    refs = [weakref.ref(engine), weakref.ref(engine.pipe), weakref.ref(engine.pipe.unet)]
    gc.disable()
    try:
        del engine
        assert [ref() for ref in refs] == [None, None, None]
    finally:
        gc.enable()


def test_the_job_path_composites_a_diffusion_fill(engine: DiffusionEngine) -> None:
    from proofroom.server.engines import compositing

    rng = np.random.default_rng(3)
    parent = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[100:180, 150:260] = True
    previews: list[np.ndarray] = []

    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        if preview is not None:
            previews.append(preview)

    result = compositing.run_fix(parent, mask, engine, InpaintParams(steps=4), progress)
    x, y, w, h = result.box
    assert result.patch.shape == (h, w, 4)
    assert (result.patch[..., 3][~mask[y : y + h, x : x + w]] == 0).all()
    assert previews and previews[-1].dtype == np.uint8
