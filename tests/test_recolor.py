"""The recolour engine on a real photograph: the astronaut's orange suit takes a new colour,
its folds and shading stay, nothing outside the mask moves, and the same request gives the
same pixels. Through the compositing every engine's result goes through (run_fix)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data
from skimage.metrics import structural_similarity

from proofroom.server.engines import EngineError, InpaintParams
from proofroom.server.engines.compositing import apply_patch, run_fix
from proofroom.server.engines.recolor import (
    RecolorEngine,
    UnknownColor,
    color_from_prompt,
    parse_color,
    rgb_to_oklab,
)


@pytest.fixture(scope="module")
def suit() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut photo and a mask of her orange suit (picked by colour, as a person
    would brush it)."""
    image = data.astronaut()
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    orange = (hsv[..., 0] >= 3) & (hsv[..., 0] <= 18) & (hsv[..., 1] > 120) & (hsv[..., 2] > 80)
    orange[:200] = False  # the suit, not the flag's stripes or the face
    orange[:, 330:] = False
    mask = cv2.morphologyEx(orange.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)).astype(bool)
    assert mask.sum() > 40_000
    return image, mask


def recolor(image: np.ndarray, mask: np.ndarray, color: str, seed: int = 0) -> np.ndarray:
    params = InpaintParams(color=parse_color(color), seed=seed)
    result = run_fix(image, mask, RecolorEngine(), params, lambda *_: None)
    return apply_patch(image, result.patch, result.box)


def hue_degrees(lab: np.ndarray) -> np.ndarray:
    return np.degrees(np.arctan2(lab[..., 2], lab[..., 1]))


def hue_gap(a: np.ndarray | float, b: float) -> np.ndarray:
    return np.abs((np.asarray(a) - b + 180) % 360 - 180)


@pytest.mark.parametrize("color", ["green", "#1e88e5", "rebeccapurple", "#d81b60"])
def test_the_suit_takes_the_colour_and_keeps_its_shading(
    suit: tuple[np.ndarray, np.ndarray], color: str
) -> None:
    image, mask = suit
    out = recolor(image, mask, color)
    # Outside the mask: every pixel is the original's.
    assert np.array_equal(out[~mask], image[~mask])
    # Inside (away from the feathered edge): the hue is the target's.
    core = cv2.erode(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    target = rgb_to_oklab(
        np.array([[int(parse_color(color)[i : i + 2], 16) for i in (1, 3, 5)]], np.uint8)
    )
    target_hue = float(hue_degrees(target)[0])
    lab = rgb_to_oklab(out[core])
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    coloured = chroma > 0.03  # hue means nothing on the near-greys of deep shadows
    assert coloured.mean() > 0.9
    gaps = hue_gap(hue_degrees(lab[coloured]), target_hue)
    assert float(np.median(gaps)) < 5 and float(np.mean(gaps < 20)) > 0.9
    before = rgb_to_oklab(image[core])
    assert float(np.median(hue_gap(hue_degrees(before), target_hue))) > 30  # it did move
    # The lightness structure (folds, seams, highlights) is the original's.
    l_before = rgb_to_oklab(image.reshape(-1, 3))[:, 0].reshape(mask.shape)
    l_after = rgb_to_oklab(out.reshape(-1, 3))[:, 0].reshape(mask.shape)
    _, ssim_map = structural_similarity(l_before, l_after, data_range=1.0, full=True)
    assert float(ssim_map[core].mean()) >= 0.9


def test_the_same_request_gives_the_same_pixels(suit: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = suit
    first = recolor(image, mask, "teal", seed=1)
    assert np.array_equal(first, recolor(image, mask, "teal", seed=1))
    # The seed plays no part: the engine says it ignores it.
    assert np.array_equal(first, recolor(image, mask, "teal", seed=99))
    assert "seed" not in RecolorEngine.params


def test_the_seam_is_feathered(suit: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = suit
    out = recolor(image, mask, "#00c853")
    # Just inside the mask's edge the change is partial: between the original and the core.
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    deep = cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    moved = np.abs(out.astype(int) - image.astype(int)).sum(axis=2)
    assert float(np.median(moved[edge])) < 0.6 * float(np.median(moved[deep]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("make the jacket green", "#008000"),
        ("can we change the color of the jacket to dark green?", "#006400"),
        ("turn the red jacket light sky blue", "#87cefa"),
        ("use #FF8800 for the logo", "#ff8800"),
        ("make it pop", None),
    ],
)
def test_the_colour_is_found_in_the_prompt(text: str, expected: str | None) -> None:
    assert color_from_prompt(text) == expected


def test_colours_are_hex_or_css_names_and_nothing_else() -> None:
    assert parse_color("Navy") == "#000080" and parse_color("#abc") == "#aabbcc"
    assert parse_color("dark orange") == "#ff8c00"
    for bad in ("blurple", "#12345", "rgb(1,2,3)x", ""):
        with pytest.raises(UnknownColor) as err:
            parse_color(bad)
        assert err.value.status == 400
    with pytest.raises(EngineError, match="needs a colour"):
        image = np.zeros((8, 8, 3), np.uint8)
        RecolorEngine().inpaint(image, np.ones((8, 8), bool), InpaintParams(), lambda *_: None)
