"""Progress of a fix: steps summed over its crops, and a live preview of the masked region."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from .base import ProgressFn

Box = tuple[int, int, int, int]

#: Longest side of the progress preview.
PREVIEW_SIDE = 256


class Preview:
    """The mask's bounding box at most PREVIEW_SIDE wide, with the crops' fills pasted in."""

    def __init__(self, parent: np.ndarray, mask: np.ndarray, box: Box, crops: list[Box]) -> None:
        self._parent, self._mask, self._box, self.crops = parent, mask, box, crops
        self._scale = min(1.0, PREVIEW_SIDE / max(box[2], box[3]))
        self._size = (max(1, round(box[2] * self._scale)), max(1, round(box[3] * self._scale)))
        self._image: np.ndarray | None = None
        self._shown = np.zeros((0, 0), np.bool_)

    def _canvas(self) -> np.ndarray:
        if self._image is None:  # built on first use: an engine may give no previews
            x, y, w, h = self._box
            region = self._parent[y : y + h, x : x + w]
            marked = np.where(self._mask[y : y + h, x : x + w], 255, 0).astype(np.uint8)
            self._image = cv2.resize(region, self._size, interpolation=cv2.INTER_AREA)
            self._shown = cv2.resize(marked, self._size, interpolation=cv2.INTER_AREA) > 0
        return self._image

    def paste(self, index: int, picture: Any, content: tuple[float, float]) -> np.ndarray | None:
        """Paste an engine's picture of crop ``index`` (of which ``content`` is the part
        showing the crop) under the mask; the updated preview, or None if unusable."""
        if not (
            isinstance(picture, np.ndarray)
            and picture.dtype == np.uint8
            and picture.ndim == 3
            and picture.shape[2] == 3
            and picture.size
        ):
            return None
        canvas = self._canvas()
        bx, by, bw, bh = self._box
        cx, cy, cw, ch = self.crops[index]
        x0, y0 = max(bx, cx), max(by, cy)
        x1, y1 = min(bx + bw, cx + cw), min(by + bh, cy + ch)
        s = self._scale
        dx0, dy0 = (
            min(round((x0 - bx) * s), self._size[0] - 1),
            min(round((y0 - by) * s), self._size[1] - 1),
        )
        dx1 = min(max(dx0 + 1, round((x1 - bx) * s)), self._size[0])
        dy1 = min(max(dy0 + 1, round((y1 - by) * s)), self._size[1])
        if x1 <= x0 or y1 <= y0:
            return canvas.copy()
        ph, pw = picture.shape[:2]
        fx, fy = pw * content[0] / cw, ph * content[1] / ch
        sx0, sy0 = min(int((x0 - cx) * fx), pw - 1), min(int((y0 - cy) * fy), ph - 1)
        sx1 = max(sx0 + 1, min(math.ceil((x1 - cx) * fx), pw))
        sy1 = max(sy0 + 1, min(math.ceil((y1 - cy) * fy), ph))
        part = cv2.resize(
            np.ascontiguousarray(picture[sy0:sy1, sx0:sx1]),
            (dx1 - dx0, dy1 - dy0),
            interpolation=cv2.INTER_AREA,
        )
        where = self._shown[dy0:dy1, dx0:dx1]
        canvas[dy0:dy1, dx0:dx1][where] = part[where]
        return canvas.copy()


class Progress:
    """Sums the crops' steps into one (step, total) and keeps the preview up to date."""

    def __init__(self, callback: ProgressFn, preview: Preview) -> None:
        self._callback = callback
        self._preview = preview
        self._totals: list[int | None] = [None] * len(preview.crops)
        self._steps = [0] * len(preview.crops)
        self._sent = -1

    def crop(self, index: int, content: tuple[float, float]) -> ProgressFn:
        """The progress function for crop ``index``; ``content`` is the fraction (width,
        height) of the engine's image that shows the crop (less than 1 in a bucket)."""

        def report(step: int, total: int, preview: np.ndarray | None) -> None:
            self._totals[index] = max(int(total), int(step), 1)
            self._steps[index] = max(self._steps[index], int(step))
            shown = None if preview is None else self._preview.paste(index, preview, content)
            self._send(shown)

        return report

    def crop_done(self, index: int, fill: np.ndarray) -> None:
        """Mark crop ``index`` finished (its engine may not have reported the last step)."""
        total = max(self._totals[index] or 1, self._steps[index])
        self._totals[index] = self._steps[index] = total
        shown = self._preview.paste(index, fill, (1.0, 1.0))
        self._send(shown, only_if_advanced=True)

    def _send(self, preview: np.ndarray | None, only_if_advanced: bool = False) -> None:
        # Crops not started yet are guessed to take as many steps as the last one known.
        known = [t for t in self._totals if t is not None]
        guess = known[-1] if known else 1
        total = sum(t if t is not None else guess for t in self._totals)
        step = min(sum(self._steps), total)
        if step < self._sent or (only_if_advanced and step == self._sent):
            return
        self._sent = step
        self._callback(step, total, preview)
