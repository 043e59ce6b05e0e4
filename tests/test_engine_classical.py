"""The classical engine: every OpenCV method fills a hole in a photograph better than a flat
colour would, and says what it is."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from proofroom.server.engines import load_engine
from proofroom.server.engines.base import EngineError, InpaintParams
from proofroom.server.engines.classical import DEFAULT_METHOD, METHODS, ClassicalEngine

from .images import sized


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(255**2 / mse)


# FSR_BEST takes seconds a crop: its case is small.
SIZES = {"fsr_best": (48, 48)}


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("where", ["middle", "edge"])
def test_each_method_fills_better_than_the_mean_colour(method: str, where: str) -> None:
    width, height = SIZES.get(method, (96, 72))
    image = sized("coffee" if where == "middle" else "rocket", width, height)
    mask = np.zeros((height, width), np.uint8)
    centre = (width // 2, height // 2) if where == "middle" else (width - 4, 8)
    cv2.ellipse(mask, centre, (width // 8, height // 8), 30, 0, 360, 1, -1)
    hole = mask.astype(bool)
    calls: list[tuple[int, int, np.ndarray | None]] = []

    def progress(step: int, total: int, preview: np.ndarray | None) -> None:
        calls.append((step, total, preview))

    damaged = image.copy()
    damaged[hole] = (255, 0, 255)  # what is under the hole must not matter
    out = ClassicalEngine(method).inpaint(damaged, hole, InpaintParams(), progress)
    assert out.shape == image.shape and out.dtype == np.uint8
    flat = np.broadcast_to(image[~hole].mean(axis=0), (int(hole.sum()), 3))
    assert psnr(image[hole], out[hole]) > psnr(image[hole], flat) + 1
    assert len(calls) == 1 and calls[0][:2] == (1, 1)
    np.testing.assert_array_equal(calls[0][2], out)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_describe_says_what_ran(method: str) -> None:
    info = ClassicalEngine(method).describe()
    assert info["engine"] == "classical" and info["method"] == method
    assert info["opencv"] == cv2.__version__ and info["device"] == "cpu"
    assert info["prompt_used"] is False
    assert json.loads(json.dumps(info)) == info


def test_the_default_method_and_the_registry() -> None:
    engine = load_engine("classical")
    assert isinstance(engine, ClassicalEngine)
    assert engine.method == DEFAULT_METHOD and engine.bucket is None


def test_an_unknown_method_fails_when_the_engine_is_made() -> None:
    with pytest.raises(EngineError, match="unknown classical method 'magic'"):
        ClassicalEngine("magic")
