"""Compositing: on real photographs, a fix changes no pixel outside its mask, bit for bit.

The engines here are the real classical engine and small engines written for the test that
implement the real interface (a bucketed one, one that drifts colour like a VAE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofroom.server.engines import compositing
from proofroom.server.engines.base import Engine, InpaintParams, ProgressFn
from proofroom.server.engines.classical import ClassicalEngine
from proofroom.server.engines.compositing import (
    CompositeError,
    InvalidMask,
    apply_patch,
    run_fix,
)

from .images import PHOTOS, photo, sized, tiled

Calls = list[tuple[int, int, "np.ndarray | None"]]


class BucketEngine(Engine):
    """A bucketed engine (like diffusion) that fills with a blurred copy over a few steps."""

    name = "bucket-test"
    bucket = 512

    def __init__(self, steps: int = 1) -> None:
        self.steps = steps
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}

    def inpaint(
        self, image: np.ndarray, mask: np.ndarray, params: InpaintParams, progress: ProgressFn
    ) -> np.ndarray:
        self.seen.append((image.copy(), mask.copy()))
        out = cv2.GaussianBlur(image, (0, 0), 3)
        for step in range(1, self.steps + 1):
            progress(step, self.steps, out[::2, ::2].copy())  # previews at half size
        return out


class DriftEngine(Engine):
    """Fills with TELEA and then shifts the colour of everything, context too, as a VAE."""

    name = "drift-test"

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}

    def inpaint(
        self, image: np.ndarray, mask: np.ndarray, params: InpaintParams, progress: ProgressFn
    ) -> np.ndarray:
        filled = cv2.inpaint(image, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        return drift(filled)


def drift(rgb: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    lab[..., 0] = lab[..., 0] * 0.9 + 8
    lab[..., 1] += 6
    lab[..., 2] -= 6
    out = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1) * 255
    return np.rint(out).astype(np.uint8)


def recorder() -> tuple[Calls, ProgressFn]:
    calls: Calls = []

    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        calls.append((step, total, preview))

    return calls, progress


def frozen(image: np.ndarray) -> np.ndarray:
    """The image made read-only, so a write to the parent fails the test."""
    image = image.copy()
    image.flags.writeable = False
    return image


@st.composite
def photo_and_mask(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A resized sample photograph and a mask of a few shapes, some over the edges."""
    name = draw(st.sampled_from(PHOTOS))
    width, height = draw(st.integers(40, 180)), draw(st.integers(40, 180))
    canvas = np.zeros((height, width), np.uint8)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["rect", "ellipse", "stroke", "dots"]))
        x = draw(st.integers(-15, width + 5))
        y = draw(st.integers(-15, height + 5))
        if kind == "rect":
            w, h = draw(st.integers(1, width)), draw(st.integers(1, height))
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), 1, -1)
        elif kind == "ellipse":
            axes = (draw(st.integers(1, width // 2)), draw(st.integers(1, height // 2)))
            cv2.ellipse(canvas, (x, y), axes, draw(st.integers(0, 179)), 0, 360, 1, -1)
        elif kind == "stroke":
            points = [(x, y)] + [
                (draw(st.integers(-5, width + 5)), draw(st.integers(-5, height + 5)))
                for _ in range(draw(st.integers(1, 3)))
            ]
            cv2.polylines(canvas, [np.array(points, np.int32)], False, 1, draw(st.integers(1, 9)))
        else:
            for _ in range(draw(st.integers(1, 8))):
                px, py = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
                canvas[py, px] = 1
    mask = canvas.astype(bool)
    if not mask.any():
        mask[height // 2, width // 2] = True
    if mask.all():
        mask[0, 0] = False
    return frozen(sized(name, width, height)), mask


def assert_only_the_mask_changes(parent: np.ndarray, mask: np.ndarray, engine: Engine) -> None:
    before = parent.copy()
    result = run_fix(parent, mask, engine, InpaintParams(seed=3), lambda *_: None)
    x, y, w, h = result.box
    ys, xs = np.nonzero(mask)
    assert result.box == (xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1)
    assert result.patch.shape == (h, w, 4) and result.patch.dtype == np.uint8
    alpha = result.patch[..., 3]
    # Alpha is zero exactly outside the mask (and reaches every masked pixel).
    np.testing.assert_array_equal(alpha > 0, mask[y : y + h, x : x + w])
    out = apply_patch(parent, result.patch, result.box)
    np.testing.assert_array_equal(out[~mask], parent[~mask])
    np.testing.assert_array_equal(parent, before)
    covered = np.zeros(mask.shape, np.int32)
    for cx, cy, cw, ch in result.crops:
        assert 0 <= cx and 0 <= cy and cx + cw <= mask.shape[1] and cy + ch <= mask.shape[0]
        covered[cy : cy + ch, cx : cx + cw] += 1
    assert covered.max() == 1, "crops overlap"
    assert covered[mask].min() == 1, "a masked pixel is in no crop"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=photo_and_mask(), method=st.sampled_from(["telea", "ns"]))
def test_pixels_outside_the_mask_are_bit_identical(
    case: tuple[np.ndarray, np.ndarray], method: str
) -> None:
    assert_only_the_mask_changes(*case, ClassicalEngine(method))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=photo_and_mask())
def test_pixels_outside_the_mask_are_bit_identical_with_fsr(
    case: tuple[np.ndarray, np.ndarray],
) -> None:
    assert_only_the_mask_changes(*case, ClassicalEngine("fsr_fast"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=photo_and_mask(), engine=st.sampled_from([BucketEngine, DriftEngine]))
def test_pixels_outside_the_mask_are_bit_identical_in_a_bucket_or_with_drift(
    case: tuple[np.ndarray, np.ndarray], engine: type[Engine]
) -> None:
    assert_only_the_mask_changes(*case, engine())


def test_a_leak_outside_the_mask_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    def unclamped(mask: np.ndarray) -> np.ndarray:
        blurred: np.ndarray = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)
        return blurred

    monkeypatch.setattr(compositing, "composite_alpha", unclamped)
    parent = sized("astronaut", 128, 128)
    mask = np.zeros((128, 128), bool)
    # Not a rectangle: the patch's box (the mask's bounds) holds unmasked pixels to leak to.
    cv2.circle(mask.view(np.uint8), (64, 64), 20, 1, -1)
    with pytest.raises(CompositeError, match="outside the mask"):
        run_fix(parent, mask, ClassicalEngine("telea"), InpaintParams(), lambda *_: None)


def test_colour_matching_takes_out_the_engines_drift() -> None:
    crop = sized("coffee", 160, 120)
    mask = np.zeros((120, 160), bool)
    cv2.ellipse(mask.view(np.uint8), (80, 60), (30, 20), 0, 0, 360, 1, -1)
    ring = compositing.ring_mask(mask)
    drifted = drift(crop)

    def lab_mean(rgb: np.ndarray) -> np.ndarray:
        pixels = rgb[mask].astype(np.float32)[None] / 255
        mean: np.ndarray = cv2.cvtColor(pixels, cv2.COLOR_RGB2LAB)[0].mean(axis=0)
        return mean

    matched, record = compositing.match_colour(drifted, crop, mask, ring)
    target = lab_mean(crop)
    before = np.abs(lab_mean(drifted) - target)
    after = np.abs(lab_mean(np.rint(matched).astype(np.uint8)) - target)
    assert (after < before / 3).all(), (before, after)
    assert record["ring_pixels"] == np.count_nonzero(ring)
    # A fill whose context is the parent's (the classical engine's) is left as it is.
    untouched, record = compositing.match_colour(crop, crop, mask, ring)
    np.testing.assert_array_equal(untouched, crop.astype(np.float32))
    assert record["drift"] is None


def test_colour_matching_in_run_fix() -> None:
    parent = frozen(sized("chelsea", 180, 120))
    mask = np.zeros((120, 180), bool)
    mask[40:80, 60:120] = True
    result = run_fix(parent, mask, DriftEngine(), InpaintParams(), lambda *_: None)
    patch = result.patch[40 - result.box[1] :, 60 - result.box[0] :][:40, :60, :3]
    raw = DriftEngine().inpaint(parent, mask, InpaintParams(), lambda *_: None)[40:80, 60:120]
    original = parent[40:80, 60:120].astype(float)
    assert abs(patch.mean() - original.mean()) < abs(raw.mean() - original.mean()) / 2
    assert result.details["compositing"]["crops"][0]["colour"]["drift"] is not None


def test_grain_matching_adds_the_rings_noise_to_a_smooth_fill() -> None:
    rng = np.random.default_rng(1)
    grey = np.full((96, 96, 3), 120, np.float32)
    image = np.clip(grey + rng.normal(0, 6, grey.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((96, 96), bool)
    mask[32:64, 32:64] = True
    ring = compositing.ring_mask(mask)
    out, record = compositing.match_grain(grey.copy(), image, mask, ring, rng)
    assert 4.5 < out[36:60, 36:60].std() < 7.5
    assert (out[~mask] == 120).all()
    assert min(record["added"]) > 4


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_a_crop_at_a_corner_is_shifted_inward(corner: str) -> None:
    parent = frozen(sized("rocket", 200, 200))
    mask = np.zeros((200, 200), bool)
    if corner == "top-left":
        mask[:20, :20] = True
    else:
        mask[180:, 180:] = True
    result = run_fix(parent, mask, ClassicalEngine(), InpaintParams(), lambda *_: None)
    # 20 pixels + 32 of context on each side: full size, moved inside instead of clipped.
    expected = (0, 0, 84, 84) if corner == "top-left" else (116, 116, 84, 84)
    assert result.crops == [expected]


def test_separate_blobs_get_separate_crops_and_close_ones_share_one() -> None:
    parent = frozen(photo("coffee"))
    mask = np.zeros(parent.shape[:2], bool)
    mask[50:60, 50:60] = True  # far from the others
    mask[300:310, 400:410] = True
    mask[300:310, 430:440] = True  # 20 pixels from its neighbour: their crops overlap
    result = run_fix(parent, mask, ClassicalEngine(), InpaintParams(), lambda *_: None)
    assert len(result.crops) == 2
    crops = result.details["compositing"]["crops"]
    assert sorted(c["components"] for c in crops) == [1, 2]
    assert sum(c["mask_pixels"] for c in crops) == 300


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.zeros((50, 60), bool), "same size"),
        (np.zeros((60, 80), bool), "empty"),
        (np.ones((60, 80), bool), "whole image"),
        (np.ones((60, 80), np.uint8), "boolean"),
        (np.ones((60, 80, 1), bool), "2-D"),
        ([[True]], "2-D"),
    ],
    ids=["size", "empty", "full", "uint8", "3-D", "list"],
)
def test_bad_masks_are_refused_with_a_clear_message(mask: Any, message: str) -> None:
    parent = sized("astronaut", 80, 60)
    with pytest.raises(InvalidMask, match=message) as caught:
        run_fix(parent, mask, ClassicalEngine(), InpaintParams(), lambda *_: None)
    assert isinstance(caught.value, ValueError)
    assert caught.value.status == 400


def test_the_bucketed_path_uses_an_8_pixel_denoise_mask() -> None:
    parent = frozen(sized("chelsea", 300, 200))
    mask = np.zeros((200, 300), bool)
    cv2.circle(mask.view(np.uint8), (150, 100), 30, 1, -1)
    engine = BucketEngine()
    result = run_fix(parent, mask, engine, InpaintParams(), lambda *_: None)
    ((image, denoise),) = engine.seen
    assert image.shape == (512, 512, 3) and denoise.shape == (512, 512)
    cells = denoise.reshape(64, 8, 64, 8)
    assert (cells.all(axis=(1, 3)) == cells.any(axis=(1, 3))).all(), "not on the 8-pixel grid"
    # The crop is 122 pixels square, so 512/122 bucket pixels a pixel; the grown mask
    # covers the scaled mask.
    x, y, w, h = result.crops[0]
    scaled = cv2.resize(mask[y : y + h, x : x + w].view(np.uint8), (512, 512)) > 0
    assert denoise[scaled].all()
    assert result.details["compositing"]["crops"][0]["bucket"] == 512
    out = apply_patch(parent, result.patch, result.box)
    np.testing.assert_array_equal(out[~mask], parent[~mask])


def test_a_thin_line_in_a_shrunk_crop_stays_in_the_denoise_mask() -> None:
    parent = frozen(tiled("rocket", 1400))
    mask = np.zeros((1400, 1400), bool)
    cv2.line(mask.view(np.uint8), (400, 400), (1000, 1000), 1, 1)
    engine = BucketEngine()
    result = run_fix(parent, mask, engine, InpaintParams(), lambda *_: None)
    ((_, denoise),) = engine.seen
    x, y, w, h = result.crops[0]
    assert (w, h) == (1203, 1203)  # 601 pixels + 301 of context each side, into 512
    ys, xs = np.nonzero(mask[y : y + h, x : x + w])
    assert denoise[(ys * 512 // 1203), (xs * 512 // 1203)].all()


def test_an_engine_that_keeps_the_context_gets_no_colour_correction_in_a_bucket() -> None:
    class Identity(BucketEngine):
        def inpaint(
            self, image: np.ndarray, mask: np.ndarray, params: InpaintParams, progress: ProgressFn
        ) -> np.ndarray:
            return image

    parent = frozen(sized("astronaut", 300, 300))
    mask = np.zeros((300, 300), bool)
    mask[100:180, 120:200] = True
    result = run_fix(parent, mask, Identity(), InpaintParams(), lambda *_: None)
    assert result.details["compositing"]["crops"][0]["colour"]["drift"] is None


def test_progress_is_summed_over_crops_with_a_preview_of_the_masked_region() -> None:
    parent = frozen(photo("coffee"))  # 600x400
    mask = np.zeros(parent.shape[:2], bool)
    mask[20:60, 20:60] = True
    mask[330:380, 520:580] = True
    calls, progress = recorder()
    result = run_fix(parent, mask, BucketEngine(steps=4), InpaintParams(), progress)
    assert len(result.crops) == 2
    assert [(s, t) for s, t, _ in calls] == [(s, 8) for s in range(1, 9)]
    for _, _, preview in calls:
        assert preview is not None and preview.dtype == np.uint8
        assert preview.shape == (165, 256, 3)  # the 560x360 box, long side 256


def test_progress_passes_no_preview_when_the_engine_gives_none() -> None:
    class Quiet(BucketEngine):
        def inpaint(
            self, image: np.ndarray, mask: np.ndarray, params: InpaintParams, progress: ProgressFn
        ) -> np.ndarray:
            progress(1, 2, None)
            progress(2, 2, None)
            return image

    parent = frozen(sized("rocket", 160, 120))
    mask = np.zeros((120, 160), bool)
    mask[50:60, 50:70] = True
    calls, progress = recorder()
    run_fix(parent, mask, Quiet(), InpaintParams(), progress)
    assert [(s, t, p) for s, t, p in calls] == [(1, 2, None), (2, 2, None)]


def test_the_engine_sees_only_the_crop_in_a_large_image() -> None:
    class Watching(ClassicalEngine):
        shapes: list[tuple[int, ...]] = []

        def inpaint(
            self, image: np.ndarray, mask: np.ndarray, params: InpaintParams, progress: ProgressFn
        ) -> np.ndarray:
            self.shapes.append(image.shape)
            return super().inpaint(image, mask, params, progress)

    parent = frozen(tiled("astronaut", 2048))
    mask = np.zeros((2048, 2048), bool)
    mask[1000:1064, 1500:1564] = True
    calls, progress = recorder()
    result = run_fix(parent, mask, Watching(), InpaintParams(), progress)
    assert Watching.shapes == [(128, 128, 3)]
    assert result.patch.shape == (64, 64, 4) and result.box == (1500, 1000, 64, 64)
    assert [(s, t) for s, t, _ in calls] == [(1, 1)]
    assert calls[-1][2] is not None and calls[-1][2].shape == (64, 64, 3)


def test_details_are_json_provenance() -> None:
    import json

    parent = frozen(sized("astronaut", 120, 120))
    mask = np.zeros((120, 120), bool)
    mask[30:50, 60:90] = True
    first = run_fix(parent, mask, ClassicalEngine(), InpaintParams(seed=5), lambda *_: None)
    again = run_fix(parent, mask, ClassicalEngine(), InpaintParams(seed=5), lambda *_: None)
    details = json.loads(json.dumps(first.details))["compositing"]
    assert details["box"] == [60, 30, 30, 20] and details["mask_pixels"] == 600
    assert details["image"] == [120, 120] and details["bucket"] is None
    assert details["mask_sha256"] == compositing.mask_digest(mask, first.box)
    assert {"box", "colour", "grain", "engine_s"} <= set(details["crops"][0])
    # The same seed gives the same grain: a fix can be reproduced.
    np.testing.assert_array_equal(first.patch, again.patch)


def test_apply_patch_refuses_a_patch_that_does_not_fit() -> None:
    parent = sized("rocket", 64, 64)
    patch = np.zeros((10, 10, 4), np.uint8)
    with pytest.raises(ValueError, match="not inside"):
        apply_patch(parent, patch, (60, 60, 10, 10))
    with pytest.raises(ValueError, match="box is 12x10"):
        apply_patch(parent, patch, (0, 0, 12, 10))


_DIFFUSION: dict[str, Engine] = {}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=photo_and_mask())
def test_pixels_outside_the_mask_are_bit_identical_with_diffusion(
    case: tuple[np.ndarray, np.ndarray], tiny_pipeline_dir: Path
) -> None:
    from proofroom.server.engines.diffusion import DiffusionEngine

    if "tiny" not in _DIFFUSION:  # one engine for every example: loading it costs seconds
        _DIFFUSION["tiny"] = DiffusionEngine(str(tiny_pipeline_dir))
    engine = _DIFFUSION["tiny"]
    parent, mask = case
    result = run_fix(parent, mask, engine, InpaintParams(seed=3, steps=2), lambda *_: None)
    out = apply_patch(parent, result.patch, result.box)
    np.testing.assert_array_equal(out[~mask], parent[~mask])
    x, y, w, h = result.box
    np.testing.assert_array_equal(result.patch[..., 3] > 0, mask[y : y + h, x : x + w])
