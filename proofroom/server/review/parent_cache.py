"""Decoded parent pictures, kept for the next job on the same parent, and PNG coding.

Decoding a large base image (and flattening its approved layers) costs more than a small
CPU fix: the variants of one request, and the next request on the same picture, reuse it.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

#: (base blob, parent layer id or None).
ParentKey = tuple[str, str | None]


class ParentCache:
    """The last few decoded parent images; safe to use from worker threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[ParentKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: ParentKey) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: ParentKey, value: np.ndarray) -> None:
        """Keep ``value`` (made read-only: the jobs of one parent share it)."""
        value.flags.writeable = False
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def decode_rgb(data: bytes) -> np.ndarray:
    """An image file's pixels as HxWx3 uint8 RGB."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def encode_png(pixels: np.ndarray) -> bytes:
    """RGB or RGBA uint8 pixels as a PNG (fast compression: patches are stored once)."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=3)
    return out.getvalue()
