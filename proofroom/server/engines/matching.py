"""Colour and grain matching against a ring of unmasked pixels around the mask."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

#: Width of the ring of unmasked pixels that colour and grain are matched to.
RING_WIDTH = 16
#: Gaussian sigma (pixels) of the blur whose residual measures grain.
GRAIN_SIGMA = 1.0
#: Colour matching may scale the fill's spread by no less / no more than this...
SPREAD_LIMITS = (0.67, 1.5)
#: ...and treats a mean shift (LAB units) larger than this as no drift it can correct.
MAX_DRIFT = 25.0

_KERNEL3 = np.ones((3, 3), np.uint8)


def ring_mask(mask: np.ndarray) -> np.ndarray:
    """Unmasked pixels within RING_WIDTH of the mask (the reference for colour and grain)."""
    outside = np.where(mask, 0, 255).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, 3)
    ring: np.ndarray = (distance > 0) & (distance <= RING_WIDTH)
    return ring


def _lab(pixels: np.ndarray) -> np.ndarray:
    """Nx3 uint8 RGB pixels as Nx3 float32 LAB (L 0-100)."""
    scaled = pixels.astype(np.float32)[None] / np.float32(255)
    lab: np.ndarray = cv2.cvtColor(scaled, cv2.COLOR_RGB2LAB)[0]
    return lab


def match_colour(
    fill: np.ndarray, image: np.ndarray, mask: np.ndarray, ring: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    """The fill (float32 RGB, 0-255) with the engine's colour drift taken out.

    The reference is the ring: the LAB mean and spread of the engine's output there are
    moved to the parent's, and the fill inside the mask gets the same correction. An engine
    that returns the context untouched (classical) needs none; one that re-renders it (a
    diffusion VAE) loses its shift without new content being pulled toward the surroundings,
    as matching the fill's own statistics to the ring's would (BENCHMARKS.md measures both).
    """
    out = fill.astype(np.float32)
    record: dict[str, Any] = {"ring_pixels": int(np.count_nonzero(ring))}
    theirs, ours = fill[ring], image[ring]
    if not theirs.size or np.array_equal(theirs, ours):
        record["drift"] = None
        return out, record
    lab_theirs, lab_ours = _lab(theirs), _lab(ours)
    mean_t, std_t = lab_theirs.mean(axis=0), lab_theirs.std(axis=0)
    mean_o, std_o = lab_ours.mean(axis=0), lab_ours.std(axis=0)
    record.update(drift=_rounded(mean_t - mean_o), ring_lab_mean=_rounded(mean_o))
    if np.abs(mean_t - mean_o).max() > MAX_DRIFT:
        # Not drift: the engine did not render the context (its pixels there are free).
        record["skipped"] = "the engine's output around the mask is not the parent's"
        return out, record
    scale = np.where(std_t > 1e-3, std_o / np.maximum(std_t, 1e-3), 1.0)
    scale = np.clip(scale, *SPREAD_LIMITS).astype(np.float32)
    record["scale"] = _rounded(scale)
    corrected = (_lab(fill[mask]) - mean_t) * scale + mean_o
    rgb = cv2.cvtColor(corrected[None].astype(np.float32), cv2.COLOR_LAB2RGB)[0]
    out[mask] = np.clip(rgb, 0, 1) * 255
    return out, record


def _residual_sigma(rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per-channel noise level at ``where``: the robust (MAD) spread of image minus blur."""
    image = rgb.astype(np.float32)
    residual = (image - cv2.GaussianBlur(image, (0, 0), GRAIN_SIGMA))[where]
    deviation = np.abs(residual - np.median(residual, axis=0))
    sigma: np.ndarray = 1.4826 * np.median(deviation, axis=0) / _RESIDUAL_GAIN
    return sigma


def _residual_gain() -> float:
    """How much of white noise's sigma survives 'image minus GaussianBlur(GRAIN_SIGMA)'."""
    k1 = cv2.getGaussianKernel(2 * math.ceil(3 * GRAIN_SIGMA) + 1, GRAIN_SIGMA)[:, 0]
    k2 = np.outer(k1, k1)
    centre = k2[k2.shape[0] // 2, k2.shape[1] // 2]
    return float(np.sqrt(1 - 2 * centre + np.sum(k2**2)))


_RESIDUAL_GAIN = _residual_gain()


def match_grain(
    fill: np.ndarray,
    image: np.ndarray,
    mask: np.ndarray,
    ring: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The fill (float32 RGB) with seeded Gaussian noise inside the mask that brings its
    noise level up to the ring's (a smooth fill next to grainy pixels shows as a patch)."""
    core = cv2.erode(mask.astype(np.uint8), _KERNEL3).view(np.bool_)
    if not ring.any() or not core.any():
        return fill, {"added": [0.0, 0.0, 0.0]}
    ring_sigma = _residual_sigma(image, ring)
    fill_sigma = _residual_sigma(fill, core)
    added = np.sqrt(np.maximum(ring_sigma**2 - fill_sigma**2, 0)).astype(np.float32)
    if added.any():
        noise = rng.standard_normal((int(np.count_nonzero(mask)), 3), dtype=np.float32)
        fill[mask] += noise * added
    return fill, {
        "ring": _rounded(ring_sigma),
        "fill": _rounded(fill_sigma),
        "added": _rounded(added),
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]
