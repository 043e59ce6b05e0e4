"""What a fill made at a coarse scale lacks, put back: a continuous edge and fine detail.

- heal_seams: PatchMatch matches the hole's edge patch by patch, but scaled back from a
  coarse level, and where the band is thin (at an image border), its fill can sit a few
  levels lighter or darker than the pixels beside it, which shows as the outline of the
  hole. Measured: +0.1 dB on 256-px holes in photographs.
- restore_detail: scaled back, the fill is softer than the grainy picture around it (the
  texture measure of the shuttle's 320x500 box: 0.48 of the surroundings' detail); tiles of
  the band's own fine detail bring it to 0.66 at no cost in PSNR. Compositing's grain match
  then tops up what is still missing with noise.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

_KERNEL3 = np.ones((3, 3), np.uint8)
#: Detail beyond this many robust sigmas of the band's is an edge, not texture: clipped.
CLIP = 2.5


def heal_seams(fill: np.ndarray, image: np.ndarray, hole: np.ndarray, sigma: float) -> np.ndarray:
    """The fill with its low-frequency mismatch at the hole's edge spread over the hole.

    The fill can sit a few levels lighter or darker than the pixels beside it (scaled back
    from a coarse level, or where the band is thin at an image border): a visible seam. As
    a healing brush does, the difference between the local means on either side of the edge
    is interpolated across the hole (pull-push, a smooth membrane) and added, which keeps
    the fill's texture and removes the step.
    """
    known = (~hole).astype(np.float32)
    inside = hole.astype(np.float32)
    blur = functools.partial(cv2.GaussianBlur, ksize=(0, 0), sigmaX=sigma)
    f32 = np.float32
    k = blur(image.astype(f32) * known[..., None]) / np.maximum(blur(known), 1e-3)[..., None]
    f = blur(fill.astype(f32) * inside[..., None]) / np.maximum(blur(inside), 1e-3)[..., None]
    edge = hole & (cv2.dilate(known.astype(np.uint8), _KERNEL3) > 0)
    weight = edge.astype(f32)
    difference = _pull_push((k - f) * weight[..., None], weight)
    healed = fill.astype(f32) + difference * inside[..., None]
    return np.clip(np.rint(healed), 0, 255).astype(np.uint8)


def _pull_push(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """A smooth interpolation of ``values`` (premultiplied by ``weight``, 0-1) everywhere."""
    if min(weight.shape[:2]) < 4 or not weight.any():
        total = float(weight.sum())
        mean = values.reshape(-1, values.shape[-1]).sum(axis=0) / max(total, 1e-6)
        return np.broadcast_to(mean, values.shape).astype(np.float32)
    coarse = _pull_push(cv2.pyrDown(values), cv2.pyrDown(weight))
    up = cv2.resize(coarse, (weight.shape[1], weight.shape[0]), interpolation=cv2.INTER_LINEAR)
    w = np.minimum(weight, 1.0)[..., None]
    known = values / np.maximum(weight, 1e-6)[..., None]
    out: np.ndarray = known * w + up * (1 - w)
    return out


def restore_detail(
    fill: np.ndarray,
    image: np.ndarray,
    hole: np.ndarray,
    source: np.ndarray,
    sigma: float,
    tile: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The fill with the detail finer than ``sigma`` (lost at a coarse working scale) put
    back: tiles of the source band's own high-pass, copied at random (seeded) places and
    cross-faded over two half-shifted grids, scaled to the band's level of detail."""
    f32 = np.float32
    pixels = image.astype(f32)
    detail = pixels - cv2.GaussianBlur(pixels, (0, 0), sigma)
    # Only where the blur saw nothing but source: the detail copied is the band's own.
    reach = 2 * math.ceil(3 * sigma) + 1
    usable = cv2.erode(source.view(np.uint8), np.ones((reach, reach), np.uint8)) > 0
    if not usable.any():
        return fill
    # The band's typical detail (robust: a table's edge in the band is not grain), and
    # its edges clipped to it, so that no tile draws a ghost of one into the hole.
    level = _robust_sigma(detail[usable])
    detail = np.clip(detail, -CLIP * level, CLIP * level)
    height, width = hole.shape
    # Tile origins whose whole tile is usable.
    inside = cv2.erode(usable.view(np.uint8), np.ones((tile, tile), np.uint8), anchor=(0, 0))
    origins = np.argwhere(inside[: height - tile + 1, : width - tile + 1] > 0)
    if not len(origins):
        return fill
    ys, xs = np.nonzero(hole)
    total = np.zeros((ys.size, 3), f32)
    weight = np.zeros(ys.size, f32)
    for shift in (0, tile // 2):
        gy, gx = (ys + shift) // tile, (xs + shift) // tile
        cells = (gy.max() + 1, gx.max() + 1)
        picks = origins[rng.integers(0, len(origins), size=cells)]
        oy, ox = (ys + shift) % tile, (xs + shift) % tile
        sy, sx = picks[gy, gx, 0] + oy, picks[gy, gx, 1] + ox
        # A tent over each tile: the two grids fade into each other, no seams.
        w = (1 - np.abs(oy + 0.5 - tile / 2) / (tile / 2)) * (
            1 - np.abs(ox + 0.5 - tile / 2) / (tile / 2)
        )
        w = w.astype(f32) + 1e-3
        total += detail[sy, sx] * w[:, None]
        weight += w
    synthetic = total / weight[:, None]
    # Cross-fading two independent tiles lowers their spread; bring it back to the band's.
    have = np.maximum(_robust_sigma(synthetic), 1e-3)
    out = fill.astype(f32)
    out[ys, xs] += synthetic * (level / have)
    restored: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return restored


def _robust_sigma(values: np.ndarray) -> np.ndarray:
    """Per-channel spread of Nx3 values: 1.4826 times the median absolute deviation."""
    deviation = np.abs(values - np.median(values, axis=0))
    sigma: np.ndarray = np.maximum(1.4826 * np.median(deviation, axis=0), 1e-3)
    return sigma.astype(np.float32)
