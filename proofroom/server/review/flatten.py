"""The parent image of a fix and the export: the base with approved patches, in order."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image


def decode_patch(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGBA"))


def flatten_layers(
    base: np.ndarray, patches: Sequence[tuple[bytes, Sequence[float]]]
) -> np.ndarray:
    """Composite RGBA patch PNGs over an RGB base at their boxes."""
    from ..engines.compositing import apply_patch

    image = base
    for data, box in patches:
        x, y, w, h = (round(v) for v in box)
        image = apply_patch(image, decode_patch(data), (x, y, w, h))
    return image
