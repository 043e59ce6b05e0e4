"""Tiled super-resolution with context margins and feathered seams.

The picture is cut into a grid of cores of at most ``tile`` pixels a side (evenly sized).
Each core is run with ``margin`` pixels of its neighbours around it, so the model sees past
the core's edge, and neighbouring outputs are cross-faded over a band of ``2 * feather``
pixels centred on the boundary, with linear weights that add up to exactly one. Where a
model's receptive field is smaller than ``margin - feather`` the tiled result equals the
untiled one up to float rounding; where it is larger (attention models), the cross-fade
hides what differs. The cost over one untiled call is the margins' area (2 * margin per
boundary per axis: 4% for a 1024-px picture in 512-px tiles) plus one copy of the output;
scripts/bench_upscale.py measures it. MARGIN is Real-ESRGAN's own ``tile_pad`` default.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Context around each core, in source pixels, and the half-width of the cross-fade band
#: (MARGIN - FEATHER is the receptive field that tiles exactly: 7 px).
MARGIN = 10
FEATHER = 3


@dataclass(frozen=True)
class Window:
    """One model call: its core and the window around it, [start, end) in source pixels."""

    core: tuple[int, int, int, int]  # x0, y0, x1, y1
    window: tuple[int, int, int, int]


def spans(length: int, tile: int) -> list[tuple[int, int]]:
    """``length`` cut into the fewest even spans of at most ``tile`` pixels."""
    count = max(1, math.ceil(length / tile))
    edges = [round(i * length / count) for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def grid(width: int, height: int, tile: int, margin: int = MARGIN) -> list[Window]:
    """The windows that cover a ``width`` x ``height`` picture, row by row."""
    windows = []
    for y0, y1 in spans(height, tile):
        for x0, x1 in spans(width, tile):
            window = (
                max(0, x0 - margin),
                max(0, y0 - margin),
                min(width, x1 + margin),
                min(height, y1 + margin),
            )
            windows.append(Window((x0, y0, x1, y1), window))
    return windows


def ramp(
    start: int, end: int, lo: int, hi: int, length: int, scale: int, feather: int
) -> np.ndarray:
    """Weights along one axis of a window [start, end) whose core is [lo, hi), in output pixels.

    1 inside the core, fading linearly to 0 across [boundary - feather, boundary + feather)
    at every boundary with a neighbour (none at the picture's own edges).
    """
    centres = (np.arange((end - start) * scale, dtype=np.float32) + 0.5) / scale + start
    weights = np.ones_like(centres)
    band = 2.0 * feather
    if lo > 0:
        weights *= np.clip((centres - (lo - feather)) / band, 0.0, 1.0)
    if hi < length:
        weights *= np.clip(((hi + feather) - centres) / band, 0.0, 1.0)
    return weights


def run_tiled(
    image: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    scale: int,
    tile: int,
    on_tile: Callable[[int, int], None] | None = None,
    margin: int = MARGIN,
    feather: int = FEATHER,
    canvas: Callable[[tuple[int, int, int]], np.ndarray] | None = None,
) -> np.ndarray:
    """``run`` over ``image`` (HxWxC) tile by tile; C'x(H*scale)x(W*scale) float32, planar.

    ``run`` maps an hxwxC window to a C'x(h*scale)x(w*scale) float32 array: planar, as a
    model's output is, so copying a core is a run of contiguous rows (an interleaved copy of
    a planar tensor is a strided gather, several times slower). ``on_tile(done, total)``
    follows every window (it may raise to stop). ``canvas(shape)``, if given, supplies the
    float32 array to write into, whatever it holds (a caller may reuse one: touching a fresh
    200 MB array for the first time costs ~0.3 s of page faults here, more than the seams).
    """
    height, width = image.shape[:2]
    windows = grid(width, height, tile, margin)
    if len(windows) == 1:
        out = run(image)
        if on_tile is not None:
            on_tile(1, 1)
        return out
    out = np.empty((0,), np.float32)
    for index, win in enumerate(windows):
        wx0, wy0, wx1, wy1 = win.window
        x0, y0, x1, y1 = win.core
        result = run(image[wy0:wy1, wx0:wx1])
        if out.size == 0:
            shape = (result.shape[0], height * scale, width * scale)
            out = np.empty(shape, np.float32) if canvas is None else canvas(shape)
        wx = ramp(wx0, wx1, x0, x1, width, scale, feather)
        wy = ramp(wy0, wy1, y0, y1, height, scale, feather)
        target = out[:, wy0 * scale : wy1 * scale, wx0 * scale : wx1 * scale]
        # Inside the core, away from the bands, no other window has weight: copy. A band
        # that an earlier window (above, or to the left) already wrote is added to; one that
        # only later windows share is written, so the canvas never needs clearing.
        for ys, ye, ykind in runs(wy):
            for xs, xe, xkind in runs(wx):
                here, part = target[:, ys:ye, xs:xe], result[:, ys:ye, xs:xe]
                if ykind == xkind == FULL:
                    here[...] = part
                    continue
                weight = wy[None, ys:ye, None] * wx[None, None, xs:xe]
                if EARLIER in (ykind, xkind):
                    here += part * weight
                else:
                    np.multiply(part, weight, out=here)
        if on_tile is not None:
            on_tile(index + 1, len(windows))
    return out


#: Kinds of stretch along a window's axis: shared with the window before it, all its own,
#: shared with the window after it.
EARLIER, FULL, LATER = "earlier", "full", "later"


def runs(weights: np.ndarray) -> list[tuple[int, int, str]]:
    """The stretches of ``weights`` above 0 as (start, end, kind): the bands and the core."""
    full = weights >= 1.0
    live = weights > 0.0
    out: list[tuple[int, int, str]] = []
    start, seen_full = 0, False
    for i in range(1, len(weights) + 1):
        if i == len(weights) or live[i] != live[start] or full[i] != full[start]:
            if live[start]:
                kind = FULL if full[start] else (LATER if seen_full else EARLIER)
                seen_full = seen_full or bool(full[start])
                out.append((start, i, kind))
            start = i
    return out
