"""Draw a model's aligned answer onto the crop, without its colour cast, with the grain.

After align.py has found the map from crop to answer:

- the cast: a per-channel gain and offset fitted on a ring of unmasked pixels beyond the
  margin the model's edit may spill into;
- the grain: the answer, resized back, is smoother than the photograph, so seeded noise
  in the mask makes up the difference against a ring of the photograph (grain is the
  robust, MAD spread of "image minus its Gaussian blur").

This replaces compositing's own colour and grain matching for hosted engines
(``match_context = False``). A model's cast is a gain and an offset per channel, where
compositing's matching moves LAB mean and spread and leaves a shift over 25 LAB units
alone. And sampling the rings costs a tenth of matching every pixel.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .align import MARGIN_RATIO, MIN_MARGIN, distance_outside, rounded

#: The ring the cast is fitted on, beyond the margin, and the grain's ring.
RING_RATIO = 0.12
MIN_RING = 12
#: The cast fit's gains are kept within these (a stronger one is not a cast).
GAIN_LIMITS = (0.6, 1.6)
#: About this many pixels at most feed each fit (cast, grain): plenty for a per-channel
#: gain, offset or spread, and sampling them costs a fraction of reading every pixel.
FIT_SAMPLES = 20_000


def match(
    answer: np.ndarray,
    warp: np.ndarray,
    crop: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    distance: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The answer drawn onto the crop through ``warp``, its cast taken out and its grain
    brought up to the photograph's: uint8 RGB that is the crop's own outside the mask
    (compositing keeps only the mask), and a record of the fits ("cast", "grain").

    The cast is a per-channel gain and offset fitted on a ring of unmasked pixels beyond
    the margin the model's edit may spill into. Grain is the robust (MAD) spread of "image
    minus its Gaussian blur"; seeded noise in the mask makes up what the answer, resized
    back, lacks against a ring of the photograph. Only what is used is read: about
    FIT_SAMPLES points of each ring, and the mask's bounding box (compositing's own
    matching, which hosted engines turn off, blurs the whole crop and takes medians of
    every pixel: 65 ms of CPU on a 1024 crop).
    """
    h, w = mask.shape
    side = max(w, h)
    if distance is None:
        distance = distance_outside(mask)
    margin = max(MIN_MARGIN, math.ceil(MARGIN_RATIO * side))
    band = max(MIN_RING, math.ceil(RING_RATIO * side))
    box = _box(mask)
    x0, y0, x1, y1 = _grown(box, margin + band, w, h)
    near = distance[y0:y1, x0:x1]
    # The cast: a ring beyond the margin, sampled from the answer through the warp.
    ring = (near > margin) & (near <= margin + band)
    if np.count_nonzero(ring) < 64:
        ring = near > 0
    ys, xs = _samples(ring)
    ys, xs = ys + y0, xs + x0
    theirs = _sample(answer, warp, xs, ys).astype(np.float64)
    ours = crop[ys, xs].astype(np.float64)
    gains, offsets = [], []
    for c in range(3):
        t, o = theirs[:, c], ours[:, c]
        var = float(t.var())
        gain = float(((t - t.mean()) * (o - o.mean())).mean() / var) if var > 1e-6 else 1.0
        gain = min(max(gain, GAIN_LIMITS[0]), GAIN_LIMITS[1])
        gains.append(gain)
        offsets.append(float(o.mean() - gain * t.mean()))
    g = np.array(gains, np.float32)
    b = np.array(offsets, np.float32)
    fitted = np.clip(np.rint(theirs * g + b), 0, 255)
    cast = {
        "ring_samples": int(ys.size),
        "gain": [rounded(v, 4) for v in gains],
        "offset": [rounded(v, 2) for v in offsets],
        "residual": rounded(float(np.abs(fitted - ours).mean()), 2),
    }
    # The answer over the mask's box, corrected.
    bx, by, bx1, by1 = box
    shifted = warp.astype(np.float64) @ np.array([[1, 0, bx], [0, 1, by], [0, 0, 1]], np.float64)
    drawn = cv2.warpAffine(
        answer,
        shifted.astype(np.float32),
        (bx1 - bx, by1 - by),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    inside = mask[by:by1, bx:bx1]
    values = drawn[inside].astype(np.float32) * g + b
    # The grain: the photograph's on a ring next to the mask; the answer's inside it (a
    # gain scales the residual, the offset drops out: blurring is linear).
    core = cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(np.bool_)
    near_ring = (near > 0) & (near <= band)
    grain: dict[str, Any] = {"added": [0.0, 0.0, 0.0]}
    if near_ring.any() and core.any():
        ring_sigma = _grain(crop[y0:y1, x0:x1], near_ring)
        fill_sigma = _grain(drawn, core) * np.abs(g)
        added = np.sqrt(np.maximum(ring_sigma**2 - fill_sigma**2, 0)).astype(np.float32)
        grain = {
            "ring": [rounded(v, 3) for v in ring_sigma],
            "fill": [rounded(v, 3) for v in fill_sigma],
            "added": [rounded(v, 3) for v in added],
        }
        if added.any():
            values += rng.standard_normal(values.shape, dtype=np.float32) * added
    out = crop.copy()
    out[by:by1, bx:bx1][inside] = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return out, {"cast": cast, "grain": grain}


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The mask's bounding box as (x0, y0, x1, y1)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _grown(box: tuple[int, int, int, int], by: int, w: int, h: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return max(x0 - by, 0), max(y0 - by, 0), min(x1 + by, w), min(y1 + by, h)


def _samples(where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of about FIT_SAMPLES of ``where``'s pixels at most, on a regular grid: a
    stride that keeps the count near the limit, so only the grid is searched."""
    count = int(np.count_nonzero(where))
    step = max(1, math.isqrt(count // FIT_SAMPLES)) if count > FIT_SAMPLES else 1
    ys, xs = np.nonzero(where[::step, ::step])
    return ys * step, xs * step


#: Gaussian sigma (pixels) of the blur whose residual measures grain.
GRAIN_SIGMA = 1.0


def _grain_gain() -> float:
    """The share of white noise's sigma that survives "image minus blur(GRAIN_SIGMA)"."""
    k1 = cv2.getGaussianKernel(2 * math.ceil(3 * GRAIN_SIGMA) + 1, GRAIN_SIGMA)[:, 0]
    k2 = np.outer(k1, k1)
    centre = float(k2[k2.shape[0] // 2, k2.shape[1] // 2])
    return float(np.sqrt(1 - 2 * centre + np.sum(k2**2)))


_GRAIN_GAIN = _grain_gain()


def _grain(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per-channel noise sigma of ``image`` (uint8, a box of the crop) at ``where``."""
    # Blurred as uint8 (a third of float32's cost); its rounding adds 0.08 to a variance.
    blurred = cv2.GaussianBlur(image, (0, 0), GRAIN_SIGMA)
    ys, xs = _samples(where)
    values = image[ys, xs].astype(np.float32) - blurred[ys, xs]
    spread = np.median(np.abs(values - np.median(values, axis=0)), axis=0)
    sigma: np.ndarray = 1.4826 * spread / _GRAIN_GAIN
    return sigma


def _sample(answer: np.ndarray, warp: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The answer's colour (Nx3) at crop pixels (xs, ys) under ``warp`` (bicubic)."""
    points = np.stack([xs, ys, np.ones_like(xs)]).astype(np.float64)
    mapped = (warp.astype(np.float64) @ points).astype(np.float32)
    # remap takes maps shaped like an image (under 32767 on a side): rows of 256 points.
    n = mapped.shape[1]
    rows = -(-n // 256)
    grid = np.zeros((2, rows * 256), np.float32)
    grid[:, :n] = mapped
    sampled = cv2.remap(
        answer,
        grid[0].reshape(rows, 256),
        grid[1].reshape(rows, 256),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    out: np.ndarray = sampled.reshape(-1, 3)[:n]
    return out


# -- internals -----------------------------------------------------------------------------
