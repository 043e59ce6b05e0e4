"""The recolour engine: the masked object takes a target colour and keeps its shading.

Works in OKLab, where lightness is separate from colour and equal steps look equal: every
masked pixel gets the target's hue, the target's chroma plus the pixel's own deviation from
the object's mean chroma, and its own lightness moved part of the way towards the target's
(the deviations, which carry the folds, texture and highlights, are kept exactly). Colours a
screen cannot show lose chroma, never lightness. No randomness: the same request gives the
same pixels. The compositing around every engine feathers the seam and keeps every pixel
outside the mask as it was.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import cv2
import numpy as np
from PIL import ImageColor

from .base import Engine, EngineError, InpaintParams, ProgressFn, check_crop

#: How far the object's mean lightness moves towards the target's (0: not at all, 1: all the
#: way). Half keeps a dark jacket recognisably the same jacket while a "white" or "black"
#: request still reads as lighter or darker.
LIGHTNESS_PULL = 0.5
#: Mask pixels whose weight ramps from 0 to 1 over this many pixels from the mask's edge, so
#: the colour change fades in rather than stopping at a hard outline.
EDGE_RAMP = 3.0

_HEX = re.compile(r"#(?:[0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b")
_WORD = re.compile(r"[a-z]+")


class UnknownColor(EngineError):
    """A colour that is neither hex nor a CSS colour name (a 400 at request time)."""

    status, code = 400, "bad_request"


def parse_color(text: str) -> str:
    """``#rrggbb`` for a hex colour (``#rgb`` too) or a CSS colour name; UnknownColor else."""
    cleaned = text.strip().lower()
    name = cleaned.replace(" ", "").replace("-", "")
    if _HEX.fullmatch(cleaned) or name in ImageColor.colormap:
        r, g, b = ImageColor.getrgb(cleaned if cleaned.startswith("#") else name)[:3]
        return f"#{r:02x}{g:02x}{b:02x}"
    shown = text if len(text) <= 40 else text[:40] + "..."
    raise UnknownColor(
        f"unknown colour {shown!r}: give a hex colour (#2e7d32) or a CSS colour name"
        " (green, navy, darkorange...)"
    )


def color_from_prompt(prompt: str) -> str | None:
    """The target colour a prompt names ("make the jacket dark green"), or None.

    The last colour mentioned wins ("turn the red jacket green" means green); names of
    several words ("light sky blue") are CSS's joined names. A hex colour counts too.
    """
    found: list[tuple[int, str]] = [(m.start(), m.group()) for m in _HEX.finditer(prompt)]
    words = [(m.start(), m.group()) for m in _WORD.finditer(prompt.lower())]
    i = 0
    while i < len(words):
        # The longest name starting here ("dark slate grey" before "dark"), then past it.
        for n in (3, 2, 1):
            joined = "".join(w for _, w in words[i : i + n])
            if i + n <= len(words) and joined in ImageColor.colormap:
                found.append((words[i][0], joined))
                i += n
                break
        else:
            i += 1
    if not found:
        return None
    return parse_color(max(found)[1])


# -- OKLab (Björn Ottosson's matrices, applied to linear sRGB) ------------------------------

_RGB_TO_LMS = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ],
    np.float32,
)
_LMS_TO_LAB = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ],
    np.float32,
)
_LAB_TO_LMS = np.linalg.inv(_LMS_TO_LAB.astype(np.float64)).astype(np.float32)
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS.astype(np.float64)).astype(np.float32)
#: sRGB decoding as a 256-entry table: a lookup beats the power function per pixel.
_DECODE = np.where(
    (v := np.arange(256, dtype=np.float64) / 255) <= 0.04045,
    v / 12.92,
    ((v + 0.055) / 1.055) ** 2.4,
).astype(np.float32)


def _apply(matrix: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``pixels @ matrix.T`` for Nx3 float32 pixels. OpenCV's per-pixel transform: NumPy's
    matmul with an inner size of 3 takes a slow path (50 ms for 200k pixels, not 0.2)."""
    flat = np.ascontiguousarray(pixels, np.float32).reshape(-1, 1, 3)
    out: np.ndarray = cv2.transform(flat, matrix).reshape(-1, 3)
    return out


def rgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """Nx3 uint8 sRGB -> Nx3 float32 OKLab (L in 0..1)."""
    lms = _apply(_RGB_TO_LMS, _DECODE[rgb])
    return _apply(_LMS_TO_LAB, np.cbrt(lms))


def oklab_to_linear(lab: np.ndarray) -> np.ndarray:
    """Nx3 OKLab -> Nx3 linear sRGB (unclipped: out of gamut shows as <0 or >1)."""
    lms = _apply(_LAB_TO_LMS, lab)
    return _apply(_LMS_TO_RGB, lms * lms * lms)


#: sRGB encoding as a table over linear light: 16,384 steps keep every output level exact
#: but a few of the darkest (off by one at most), at a fraction of the power function's cost.
_ENCODE_STEPS = 16383
_ENCODE = np.rint(
    255
    * np.where(
        (lin := np.linspace(0.0, 1.0, _ENCODE_STEPS + 1)) <= 0.0031308,
        lin * 12.92,
        1.055 * np.power(lin, 1 / 2.4) - 0.055,
    )
).astype(np.uint8)
#: Lightness steps of the gamut table (the largest chroma a screen shows at each lightness).
_GAMUT_STEPS = 1024


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """Linear sRGB in 0..1 -> uint8 sRGB."""
    index = np.rint(np.clip(linear, 0.0, 1.0) * _ENCODE_STEPS).astype(np.int32)
    encoded: np.ndarray = _ENCODE[index]
    return encoded


def max_chroma(hue: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lightness grid, the largest OKLab chroma sRGB can show at each) for one hue
    (a unit a/b vector): found by bisection once per request, read by interpolation."""
    grid = np.linspace(0.0, 1.0, _GAMUT_STEPS + 1, dtype=np.float32)
    lo = np.zeros_like(grid)
    hi = np.full_like(grid, 0.5)  # beyond any sRGB colour's chroma
    for _ in range(20):
        mid = (lo + hi) / 2
        lab = np.stack([grid, hue[0] * mid, hue[1] * mid], axis=1)
        fits = _in_gamut(oklab_to_linear(lab))
        lo = np.where(fits, mid, lo)
        hi = np.where(fits, hi, mid)
    return grid, lo


def recolor_pixels(lab: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The recoloured Nx3 OKLab pixels, blended with the originals by ``weight`` (N, 0..1)."""
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    w_sum = float(weight.sum()) or 1.0
    mean_L = float((L * weight).sum() / w_sum)
    mean_c = float((chroma * weight).sum() / w_sum)
    t_L, t_a, t_b = (float(x) for x in target)
    t_c = float(np.hypot(t_a, t_b))
    hue = np.array([t_a, t_b], np.float32) / t_c if t_c > 1e-6 else np.zeros(2, np.float32)
    new_L = np.clip(L + np.float32(LIGHTNESS_PULL * (t_L - mean_L)), 0.0, 1.0)
    gain = np.float32(t_c / max(mean_c, t_c, 1e-3))
    new_c = np.maximum(np.float32(t_c) + (chroma - np.float32(mean_c)) * gain, 0.0)
    # Where the screen cannot show that much chroma at that lightness, as much as it can.
    grid, limit = max_chroma(hue)
    new_c = np.minimum(new_c, np.interp(new_L, grid, limit).astype(np.float32))
    w = weight[:, None]
    out = np.stack([new_L, hue[0] * new_c, hue[1] * new_c], axis=1)
    blended: np.ndarray = lab + (out - lab) * w
    return blended


def _in_gamut(linear: np.ndarray) -> np.ndarray:
    """Which Nx3 linear-sRGB pixels a screen can show (a hair of rounding allowed)."""
    inside = ((linear >= -1e-4) & (linear <= 1 + 1e-4)).all(axis=1)
    return np.asarray(inside)


class RecolorEngine(Engine):
    """Gives the masked object a target colour, keeping its shading and texture (CPU)."""

    name: ClassVar[str] = "recolor"
    params: ClassVar[frozenset[str]] = frozenset({"color", "prompt"})
    bucket = None
    #: The object's own texture is kept: the ring's grain and colour are not its business.
    match_context: ClassVar[bool] = False

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        if model is not None:
            raise EngineError("the recolor engine takes no model")

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": None,
            "method": "oklab",
            "lightness_pull": LIGHTNESS_PULL,
            "edge_ramp": EDGE_RAMP,
            "opencv": cv2.__version__,
            "device": "cpu",
            "prompt_used": "for the colour only",
            "seed_used": False,
        }

    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        params: InpaintParams,
        progress: ProgressFn,
    ) -> np.ndarray:
        """Recolour ``mask`` of ``image`` to ``params.color`` (or the colour in the prompt)."""
        check_crop(image, mask)
        color = params.color or color_from_prompt(params.prompt)
        if color is None:
            raise EngineError("the recolor engine needs a colour (color, or one in the prompt)")
        hexed = parse_color(color)
        target = rgb_to_oklab(np.array([ImageColor.getrgb(hexed)[:3]], np.uint8))[0]
        ys, xs = np.nonzero(mask)
        out = image.copy()
        if ys.size:
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            sub = mask[y0:y1, x0:x1]
            # Distance to the nearest pixel outside the mask, padded so the crop's own
            # border does not count as an edge unless the image ends there.
            padded = cv2.copyMakeBorder(sub.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT)
            distance = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
            weight_map = np.clip(distance / EDGE_RAMP, 0.0, 1.0)
            inside = sub
            pixels = image[y0:y1, x0:x1][inside]
            lab = rgb_to_oklab(pixels)
            new = recolor_pixels(lab, target, weight_map[inside].astype(np.float32))
            region = out[y0:y1, x0:x1]
            region[inside] = linear_to_srgb8(oklab_to_linear(new))
        progress(1, 1, out)
        return out
