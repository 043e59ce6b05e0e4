"""Texture and streak measures of a filled hole, against the picture around it.

What the fill engine is judged by where no ground truth exists (an object removed): a fill
should look like its surroundings, neither smoother (a smear) nor more orderly (streaks).

- **coherence**: how strongly the gradients in a neighbourhood share one orientation
  (structure tensor, ``((l1 - l2) / (l1 + l2)) ** 2``, 0 = no preferred direction, 1 = all
  parallel), on the luminance blurred past its grain. The long stripes and wedges that
  diffusion-style inpainting (Navier-Stokes) draws across a large hole score 0.7-0.85 on
  the shuttle photograph whose backdrop scores 0.4; ``streaks`` is the hole's coherence
  minus the ring's.
- **texture**: the typical (median absolute) band-pass detail (difference of Gaussians,
  sigma 1 and 3) inside the hole over that around it: 1 = as much fine detail as the
  surroundings, far below 1 = a smear. A median, so that a few strong edges (a seam, a
  table's edge in the ring) do not decide it.

Inside the hole means more than EDGE pixels from its edge (the seam is not the fill); the
ring is the unmasked pixels between RING_START and RING_START + RING from the hole, far
enough out that the structure tensor's neighbourhood does not reach into the hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Pixels inside the hole's edge that are not counted as the fill.
EDGE = 4
#: The ring starts this far outside the hole (2.5 tensor sigmas)...
RING_START = 20
#: ...and is this wide.
RING = 40
#: Gaussian sigma of the gradients (above grain) and of the structure tensor's neighbourhood.
GRADIENT_SIGMA = 2.0
TENSOR_SIGMA = 8.0
#: The band of the detail measure (difference of Gaussians).
DETAIL_SIGMAS = (1.0, 3.0)
#: Floor of the tensor's trace: keeps a perfectly flat neighbourhood from dividing by 0.
FLAT_ENERGY = 1e-3


@dataclass(frozen=True)
class Texture:
    """A fill's measures inside the hole and in the ring around it."""

    coherence_hole: float
    coherence_ring: float
    texture: float

    @property
    def streaks(self) -> float:
        """Coherence inside the hole above the ring's (0 or less: no more orderly than it)."""
        return self.coherence_hole - self.coherence_ring


def _luminance(rgb: np.ndarray) -> np.ndarray:
    lum: np.ndarray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return lum


def coherence_map(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel orientation coherence (0-1) of an RGB uint8 image."""
    lum = cv2.GaussianBlur(_luminance(rgb), (0, 0), GRADIENT_SIGMA)
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3) / 8
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), TENSOR_SIGMA)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), TENSOR_SIGMA)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), TENSOR_SIGMA)
    trace = jxx + jyy
    spread = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2)
    coherence: np.ndarray = (spread / np.maximum(trace, FLAT_ENERGY)) ** 2
    return coherence


def regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hole's core and the ring of unmasked pixels around it (both HxW bool)."""
    m8 = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m8, cv2.DIST_L2, 3)
    outside = cv2.distanceTransform(1 - m8, cv2.DIST_L2, 3)
    core: np.ndarray = mask & (inside > EDGE)
    ring: np.ndarray = ~mask & (outside > RING_START) & (outside <= RING_START + RING)
    return core, ring


def measure(rgb: np.ndarray, mask: np.ndarray) -> Texture:
    """The measures of the filled ``rgb`` (HxWx3 uint8) in its hole ``mask`` (HxW bool)."""
    core, ring = regions(mask)
    if not core.any() or not ring.any():
        raise ValueError("the hole is too thin or fills the picture: nothing to measure")
    coherence = coherence_map(rgb)
    lum = _luminance(rgb)
    band = cv2.GaussianBlur(lum, (0, 0), DETAIL_SIGMAS[0]) - cv2.GaussianBlur(
        lum, (0, 0), DETAIL_SIGMAS[1]
    )
    detail = np.abs(band)
    ring_detail = float(np.median(detail[ring]))
    return Texture(
        coherence_hole=float(coherence[core].mean()),
        coherence_ring=float(coherence[ring].mean()),
        texture=float(np.median(detail[core])) / max(ring_detail, 1e-6),
    )
