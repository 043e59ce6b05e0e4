"""Real photographs for tests and benchmarks: scikit-image's bundled sample images.

Masks over photographs exercise what synthetic gradients do not: texture, edges, grain.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from skimage import data

#: Colour photographs bundled with scikit-image (no download needed).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@functools.cache
def photo(name: str) -> np.ndarray:
    """The named photograph as read-only HxWx3 uint8 RGB."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose one of {PHOTOS}")
    image = np.ascontiguousarray(getattr(data, name)()[..., :3], dtype=np.uint8)
    image.flags.writeable = False
    return image


def sized(name: str, width: int, height: int) -> np.ndarray:
    """The photograph resized to ``width`` x ``height`` (a new, writable array)."""
    image = photo(name)
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )


def tiled(name: str, side: int) -> np.ndarray:
    """A ``side`` x ``side`` image of the photograph mirrored over and over, which keeps its
    texture and grain at full resolution (a resized copy would be smooth)."""
    image = photo(name)
    h, w = image.shape[:2]
    out = np.pad(image, ((0, max(side - h, 0)), (0, max(side - w, 0)), (0, 0)), "symmetric")
    return np.ascontiguousarray(out[:side, :side])
