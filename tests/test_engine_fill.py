"""The fill engine on real photographs: only the mask changes, large holes get texture and no
streaks (where the classical engine draws them), variants differ by seed and repeat by seed,
and bad masks get a clear answer."""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofroom.server.engines import fill, texture
from proofroom.server.engines.base import EngineError, InpaintParams
from proofroom.server.engines.classical import ClassicalEngine
from proofroom.server.engines.compositing import InvalidMask, apply_patch, run_fix
from proofroom.server.engines.fill import FillEngine

from .images import PHOTOS, sized

#: The shuttle model in the astronaut photograph scaled to 1024 px: its outline (tank,
#: boosters, orbiter, stand), grown by 10 px (as scripts/bench_fill.py has it).
SHUTTLE = (
    (790, 0), (860, 0), (870, 70), (905, 70), (910, 380), (935, 470), (915, 500),
    (905, 560), (950, 565), (950, 590), (730, 590), (730, 565), (760, 560), (740, 500),
    (700, 470), (720, 400), (760, 330), (760, 80), (790, 75),
)  # fmt: skip


def no_progress(step: int, total: int, preview: np.ndarray | None) -> None:
    """Progress is checked where it matters, not here."""


def shuttle_mask() -> np.ndarray:
    outline = np.zeros((1024, 1024), np.uint8)
    cv2.fillPoly(outline, [np.array(SHUTTLE, np.int32)], 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    return cv2.dilate(outline, kernel) > 0


def composite(
    image: np.ndarray, mask: np.ndarray, engine: Any, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """The picture as its layer shows it, and the run's compositing details."""
    result = run_fix(image, mask, engine, InpaintParams(seed=seed), no_progress)
    return apply_patch(image, result.patch, result.box), result.details


@pytest.fixture(scope="module")
def engine() -> FillEngine:
    return FillEngine()


@st.composite
def photo_and_mask(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A photograph 64-200 px a side and a mask of strokes, dots, boxes and large blobs
    (large enough for PatchMatch), anywhere, edges included."""
    name = draw(st.sampled_from(PHOTOS))
    width, height = draw(st.integers(64, 200)), draw(st.integers(64, 200))
    canvas = np.zeros((height, width), np.uint8)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["blob", "blob", "rect", "stroke", "dots"]))
        x, y = draw(st.integers(-10, width + 5)), draw(st.integers(-10, height + 5))
        if kind == "blob":
            axes = (draw(st.integers(40, 80)), draw(st.integers(40, 80)))
            cv2.ellipse(canvas, (x, y), axes, draw(st.integers(0, 179)), 0, 360, 1, -1)
        elif kind == "rect":
            w, h = draw(st.integers(1, width)), draw(st.integers(1, height))
            cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), 1, -1)
        elif kind == "stroke":
            points = [(x, y)] + [
                (draw(st.integers(-5, width + 5)), draw(st.integers(-5, height + 5)))
                for _ in range(draw(st.integers(1, 3)))
            ]
            cv2.polylines(canvas, [np.array(points, np.int32)], False, 1, draw(st.integers(1, 7)))
        else:
            for _ in range(draw(st.integers(1, 6))):
                canvas[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))] = 1
    mask = canvas.astype(bool)
    if not mask.any():
        mask[height // 2, width // 2] = True
    if mask.all():
        mask[0, 0] = False
    image = sized(name, width, height)
    image.flags.writeable = False
    return image, mask


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=photo_and_mask(), seed=st.integers(0, 2**32))
def test_only_the_mask_changes_and_what_was_under_it_does_not_matter(
    engine: FillEngine, case: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    image, mask = case
    out, _ = composite(image, mask, engine, seed)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    # The engine reads nothing under the mask: a painted-over hole gives the same fill.
    # (On the engine: compositing's grain match measures the ring with a blur that reaches
    # a few pixels under the mask.)
    params = InpaintParams(seed=seed)
    painted = image.copy()
    painted[mask] = (255, 0, 255)
    ours = engine.inpaint(image.copy(), mask, params, no_progress)
    again = engine.inpaint(painted, mask, params, no_progress)
    np.testing.assert_array_equal(again[mask], ours[mask])
    assert not (again[mask] == (255, 0, 255)).all(axis=1).any()


def test_the_shuttle_is_removed_with_texture_and_without_streaks(engine: FillEngine) -> None:
    image, mask = sized("astronaut", 1024, 1024), shuttle_mask()
    filled, _ = composite(image, mask, engine)
    np.testing.assert_array_equal(filled[~mask], image[~mask])
    old, _ = composite(image, mask, ClassicalEngine())
    new_measure, old_measure = texture.measure(filled, mask), texture.measure(old, mask)
    # Navier-Stokes draws stripes and wedges across the hole; the fill is no more orderly
    # than the backdrop around it.
    assert old_measure.streaks > 0.25
    assert new_measure.streaks < 0.1
    assert new_measure.texture > 0.6
    assert engine.last_details["patchmatch_parts"] == 1
    # Nothing of the white orbiter is left: 14% of the hole was brighter than all but 1% of
    # the pixels around it; the fill is not.
    core, ring = texture.regions(mask)

    def bright(picture: np.ndarray) -> float:
        lum = cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY)
        return float(np.mean(lum[core] > np.percentile(lum[ring], 99)))

    assert bright(image) > 0.1
    assert bright(filled) < 0.001


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket"])
def test_large_holes_in_texture_have_no_streaks(engine: FillEngine, name: str) -> None:
    image = sized(name, 320, 240)
    mask = np.zeros((240, 320), np.uint8)
    cv2.ellipse(mask, (160, 120), (55, 45), 20, 0, 360, 1, -1)
    hole = mask.astype(bool)
    filled, _ = composite(image, hole, engine)
    np.testing.assert_array_equal(filled[~hole], image[~hole])
    assert texture.measure(filled, hole).streaks < 0.1
    assert engine.last_details["patchmatch"]["scale"] == 1.0


@pytest.mark.parametrize("side", [1024, 400])
def test_the_fill_comes_from_the_band_around_the_hole_only(engine: FillEngine, side: int) -> None:
    # Unrestricted, PatchMatch may copy salient content from anywhere in the crop into the
    # hole (DESIGN.md section 8). Whatever lies beyond the band must not change the fill.
    image = sized("astronaut", side, side)
    mask = cv2.resize(shuttle_mask().view(np.uint8), (side, side)) > 0
    params = InpaintParams(seed=5)
    filled = engine.inpaint(image.copy(), mask, params, no_progress)
    band = engine.last_details["patchmatch"]["band"]
    assert fill.BAND_LIMITS[0] <= band <= fill.BAND_LIMITS[1]
    outside = np.where(mask, 0, 255).astype(np.uint8)
    far = cv2.distanceTransform(outside, cv2.DIST_L2, 3) > band + 1
    elsewhere = image.copy()
    elsewhere[far] = sized("chelsea", side, side)[far]
    refilled = engine.inpaint(elsewhere, mask, params, no_progress)
    np.testing.assert_array_equal(refilled[mask], filled[mask])


def test_variants_differ_by_seed_and_a_seed_repeats(engine: FillEngine) -> None:
    image = sized("coffee", 320, 240)
    mask = np.zeros((240, 320), np.uint8)
    cv2.ellipse(mask, (150, 130), (50, 40), 0, 0, 360, 1, -1)
    hole = mask.astype(bool)
    first = run_fix(image, hole, engine, InpaintParams(seed=11), no_progress)
    repeat = run_fix(image, hole, engine, InpaintParams(seed=11), no_progress)
    np.testing.assert_array_equal(first.patch, repeat.patch)

    def smooth(seed: int, eng: Any) -> np.ndarray:
        out, _ = composite(image, hole, eng, seed)
        # Blurred past the grain, which differs per seed in any engine.
        return cv2.GaussianBlur(out, (0, 0), 2.0)[hole].astype(np.int16)

    ours = np.abs(smooth(1, engine) - smooth(2, engine)).mean()
    theirs = np.abs(smooth(1, ClassicalEngine()) - smooth(2, ClassicalEngine())).mean()
    assert theirs < 2  # the old engine's variants: the same fill under other grain
    assert ours > 6


def test_thin_strokes_and_blemishes_take_navier_stokes(engine: FillEngine) -> None:
    image = sized("rocket", 256, 192)
    mask = np.zeros((192, 256), np.uint8)
    cv2.line(mask, (10, 20), (240, 170), 1, 1)  # a one-pixel wire: no room for a patch
    cv2.circle(mask, (200, 50), 12, 1, -1)  # a blemish
    hole = mask.astype(bool)
    out, _ = composite(image, hole, engine)
    np.testing.assert_array_equal(out[~hole], image[~hole])
    details = engine.last_details
    assert details["patchmatch_parts"] == 0 and details["navier_stokes_parts"] >= 2
    assert details["navier_stokes"]["pixels"] == int(hole.sum())


def test_a_thick_hole_and_a_thin_stroke_in_one_crop(engine: FillEngine) -> None:
    image = sized("chelsea", 300, 200)
    mask = np.zeros((200, 300), np.uint8)
    cv2.circle(mask, (150, 100), 40, 1, -1)
    cv2.line(mask, (60, 30), (250, 40), 1, 2)
    hole = mask.astype(bool)
    progress: list[tuple[int, int]] = []
    out = engine.inpaint(
        image.copy(), hole, InpaintParams(), lambda s, t, p: progress.append((s, t))
    )
    assert out.shape == image.shape and out.dtype == np.uint8
    assert progress == [(1, 2), (2, 2)]
    details = engine.last_details
    assert details["patchmatch_parts"] == 1 and details["navier_stokes_parts"] == 1
    assert details["patchmatch"]["pixels"] + details["navier_stokes"]["pixels"] == hole.sum()


def test_each_fix_reports_what_ran_on_each_crop(engine: FillEngine) -> None:
    engine.last_call()  # whatever earlier tests left
    image = sized("coffee", 600, 300)
    mask = np.zeros((300, 600), np.uint8)
    cv2.circle(mask, (90, 80), 40, 1, -1)  # two parts far apart: two crops
    cv2.line(mask, (450, 250), (560, 230), 1, 3)
    result = run_fix(image, mask.astype(bool), engine, InpaintParams(), no_progress)
    assert len(result.crops) == 2
    call = engine.last_call()
    assert json.loads(json.dumps(call)) == call
    kinds = sorted(
        "patchmatch" if crop["patchmatch_parts"] else "navier_stokes" for crop in call["fill"]
    )
    assert kinds == ["navier_stokes", "patchmatch"]
    assert engine.last_call() == {"fill": []}


def test_describe_says_what_it_uses(engine: FillEngine) -> None:
    info = engine.describe()
    assert info["engine"] == "fill" and info["device"] == "cpu"
    assert info["pypatchmatch"] and info["opencv"] == cv2.__version__
    assert info["prompt_used"] is False and info["seed_used"] is True
    assert set(info["algorithms"]) == {"patchmatch", "navier_stokes"}
    assert json.loads(json.dumps(info)) == info
    assert FillEngine.kind == "edit" and FillEngine.params == frozenset({"seed"})
    assert FillEngine.models == () and FillEngine.hosted is False
    assert FillEngine.availability(None) is None


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.zeros((40, 60), bool), "the mask is empty"),
        (np.ones((40, 60), bool), "covers the whole image"),
        (np.zeros((40, 60), np.uint8), "must be boolean"),
        (np.zeros((30, 60), bool), "does not match"),
    ],
)
def test_bad_masks_get_a_clear_message(engine: FillEngine, mask: np.ndarray, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        engine.inpaint(sized("coffee", 60, 40), mask, InpaintParams(), no_progress)


def test_an_empty_mask_is_a_bad_request_on_the_job_path(engine: FillEngine) -> None:
    with pytest.raises(InvalidMask, match="the mask is empty") as caught:
        run_fix(
            sized("coffee", 60, 40), np.zeros((40, 60), bool), engine, InpaintParams(), no_progress
        )
    assert caught.value.status == 400


def test_the_fill_engine_has_no_models() -> None:
    with pytest.raises(EngineError, match="no models"):
        FillEngine("big-lama")


def test_without_pypatchmatch_it_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    # A platform without a wheel, whose source build failed: the library did not load.
    monkeypatch.setattr(
        fill, "_patchmatch", lambda: (None, "pypatchmatch's native library did not load")
    )
    assert FillEngine.availability(None) == "pypatchmatch's native library did not load"
    with pytest.raises(EngineError, match="cannot run here: pypatchmatch"):
        FillEngine()


def test_a_hole_with_nothing_around_it_to_copy_says_so(engine: FillEngine) -> None:
    # All but a one-pixel column: at the reduced working scale no whole pixel is source.
    image = sized("rocket", 200, 200)
    mask = np.ones((200, 200), bool)
    mask[:, 0] = False
    with pytest.raises(EngineError, match="no unmasked pixels around the hole"):
        engine.inpaint(image, mask, InpaintParams(), no_progress)
