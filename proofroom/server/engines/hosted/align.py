"""Bring a hosted model's answer back onto the crop it was asked to edit.

Hosted image models redraw the whole picture: Gemini answers at its own size and aspect,
both vendors shift the content by a few pixels, soften it, and give it a colour cast. The
path here, in order:

1. ``frame_crop``: the crop padded (mirrored, right and bottom) to an aspect the model
   produces and resized to the size it is asked for, so that an answer of that size maps
   back by a plain scale.
2. ``align``: an initial map from the crop to the answer (a scale; for an answer of
   another aspect, both readings of it, cropped to fill or padded to fit, are tried), then
   ECC (OpenCV's ``findTransformECC``) on an affine warp, coarse then fine, over the pixels
   the edit cannot have touched: the mask grown by a margin is left out (and the mirrored
   padding, which the crop does not have). An answer that does not correlate with the
   crop, that needs more than a small correction, or whose picture does not cover the
   mask, fails the job (AlignmentError) rather than compositing a misaligned fill.
3. match.py then draws the answer through that map and matches its colour and grain.

Compositing (engines/compositing.py) keeps only the pixels inside the mask and checks
every other pixel bit for bit, so nothing here can leak outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .calls import HostedError

#: Side of the coarse ECC pass (pixels); the fine pass runs at up to FINE_SIDE. On a
#: 1023-pixel crop the warp found is within 0.06-0.09 px of the true one at a fine side of
#: 256 to 512 alike (scripts/bench_hosted.py's case): 320 costs half of 512's CPU.
COARSE_SIDE = 192
FINE_SIDE = 320
COARSE_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
FINE_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 25, 1e-6)
#: An aligned answer correlates at least this well with the crop outside the mask.
MIN_CORRELATION = 0.75
#: The correction ECC may make to the initial scale map: linear part within this of
#: identity, shift within this fraction of the crop's longer side.
MAX_LINEAR_CHANGE = 0.08
MAX_SHIFT = 0.08
#: Left out of the alignment and the cast fit around the mask: the model's edit spills
#: (match.py uses the same margin).
MARGIN_RATIO = 0.04
MIN_MARGIN = 4
#: Aspect ratios differing by less than this (relative) are read as the same.
ASPECT_TOLERANCE = 0.02


class AlignmentError(HostedError):
    """The model's answer could not be aligned with the crop; nothing was composited."""

    code = "alignment_failed"


@dataclass(frozen=True)
class Frame:
    """What is sent: the crop padded to the model's aspect and resized to its size."""

    #: RGB uint8 at the requested size.
    image: np.ndarray
    #: The mask at the frame's size (bool).
    mask: np.ndarray
    #: Frame pixels per crop pixel, (x, y).
    scale: tuple[float, float]
    #: (height, width) of the crop.
    crop_shape: tuple[int, int]
    #: The aspect or size asked for ("4:3", "1536x1024").
    label: str

    def to_json(self) -> dict[str, Any]:
        height, width = self.image.shape[:2]
        return {
            "sent": [width, height],
            "asked": self.label,
            "scale": [round(s, 5) for s in self.scale],
        }


def nearest_aspect(width: int, height: int, aspects: list[tuple[int, int]]) -> tuple[int, int]:
    """The aspect in ``aspects`` closest to width:height (on a log scale)."""
    ratio = math.log(width / height)
    return min(aspects, key=lambda a: abs(math.log(a[0] / a[1]) - ratio))


def frame_crop(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], label: str) -> Frame:
    """The crop and mask padded to ``size``'s aspect and resized to ``size`` (w, h)."""
    h, w = mask.shape
    fw, fh = size
    # The smallest box of the target aspect holding the crop, anchored top-left.
    pw = max(w, math.ceil(h * fw / fh))
    ph = max(h, math.ceil(w * fh / fw))
    padded = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, cv2.BORDER_REFLECT_101)
    marked = np.zeros((ph, pw), np.uint8)
    marked[:h, :w] = np.where(mask, 255, 0)
    shrink = fw < pw
    rgb = cv2.resize(padded, (fw, fh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    # Any frame pixel a masked pixel touches is masked: the model is told to edit it.
    small = cv2.resize(
        marked, (fw, fh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    return Frame(
        image=rgb,
        mask=small > 0,
        scale=(fw / pw, fh / ph),
        crop_shape=(h, w),
        label=label,
    )


def align(
    answer: np.ndarray,
    crop: np.ndarray,
    mask: np.ndarray,
    frame: Frame,
    distance: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The map (2x3, crop pixels -> answer pixels) that lays the answer (RGB uint8, any
    size) onto the crop, and the alignment's record. Raises AlignmentError when it cannot
    be found. ``distance`` is ``distance_outside(mask)`` if the caller has it."""
    h, w = mask.shape
    ah, aw = answer.shape[:2]
    if distance is None:
        distance = distance_outside(mask)
    untouched = distance > max(MIN_MARGIN, math.ceil(MARGIN_RATIO * max(w, h)))
    if np.count_nonzero(untouched) < 0.05 * mask.size:
        raise AlignmentError(
            "too little of the crop lies outside the mask to align the model's answer with"
        )
    # Grey uint8: shrinking it costs a third of shrinking float32 (ECC takes either).
    template = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    gray = cv2.cvtColor(answer, cv2.COLOR_RGB2GRAY)
    tried = []
    best: tuple[float, np.ndarray, np.ndarray, str] | None = None
    for name, initial in _initial_maps(frame, aw, ah):
        warp, rho = _ecc(template, gray, untouched, initial, COARSE_SIDE, COARSE_CRITERIA)
        entry: dict[str, Any] = {"reading": name, "coarse_correlation": rounded(rho)}
        tried.append(entry)
        if warp is None:
            continue
        # A reading whose warp needs more than a drift's correction is the wrong reading
        # (an affine warp can stretch one into another, but that is not what the model did).
        entry["plausible"] = _plausible(warp, initial, w, h)
        if entry["plausible"] and (best is None or rho > best[0]):
            best = (rho, warp, initial, name)
    if best is None:
        if any("plausible" in entry for entry in tried):
            raise AlignmentError(
                f"aligning the model's {aw}x{ah} answer needs more than a small shift or "
                "scale (it moved or recomposed the picture); nothing was composited"
            )
        raise AlignmentError(
            f"the model's {aw}x{ah} answer could not be aligned with the {w}x{h} crop "
            "(no correlation outside the mask); nothing was composited"
        )
    _, coarse, initial, reading = best
    fine, rho = _ecc(template, gray, untouched, coarse, FINE_SIDE, FINE_CRITERIA)
    if fine is None or not _plausible(fine, initial, w, h):
        fine, rho = coarse, best[0]
    record: dict[str, Any] = {
        "answer": [aw, ah],
        "reading": reading,
        "tried": tried,
        "correlation": rounded(rho),
    }
    if rho < MIN_CORRELATION:
        raise AlignmentError(
            f"the model's answer does not match the picture outside the mask (correlation "
            f"{rho:.2f} after alignment, at least {MIN_CORRELATION} needed); it may have "
            "redrawn or moved the whole scene, so nothing was composited"
        )
    change = _relative(fine, initial)
    record.update(
        warp=[[rounded(v, 5) for v in row] for row in fine],
        correction={
            "linear": rounded(float(np.abs(change[:, :2] - np.eye(2)).max()), 5),
            "shift_px": rounded(float(np.hypot(*change[:, 2])), 3),
        },
    )
    _check_covers(fine, mask, aw, ah)
    return fine, record


def rounded(value: float, digits: int = 4) -> float:
    """A float for provenance (JSON), rounded."""
    return round(float(value), digits)


def distance_outside(mask: np.ndarray) -> np.ndarray:
    """Float32 distance (pixels) of every pixel to the mask; 0 inside it. One pass, where
    growing the mask by ~100 pixels with a kernel would take a second on a 1024 crop."""
    outside = np.where(mask, 0, 255).astype(np.uint8)
    distance: np.ndarray = cv2.distanceTransform(outside, cv2.DIST_L2, 3)
    return distance


def _initial_maps(frame: Frame, aw: int, ah: int) -> list[tuple[str, np.ndarray]]:
    """Maps from crop pixels to answer pixels (2x3) before ECC, one per reading of the
    answer: stretched to its size, and (for another aspect) cropped to fill or padded."""
    fh, fw = frame.image.shape[:2]
    sx, sy = frame.scale
    # Pixel centres: resizing by k maps x to (x + 0.5) k - 0.5.
    readings = [("resized", aw / fw, ah / fh, 0.0, 0.0)]
    if abs((aw / ah) / (fw / fh) - 1) > ASPECT_TOLERANCE:
        for name, k in (("cropped", max(aw / fw, ah / fh)), ("padded", min(aw / fw, ah / fh))):
            readings.append((name, k, k, (aw - k * fw) / 2, (ah - k * fh) / 2))
    maps = []
    for name, kx, ky, ox, oy in readings:
        ax, ay = kx * sx, ky * sy
        warp = [[ax, 0, 0.5 * ax - 0.5 + ox], [0, ay, 0.5 * ay - 0.5 + oy]]
        maps.append((name, np.array(warp, np.float32)))
    return maps


def _ecc(
    template: np.ndarray,
    answer: np.ndarray,
    untouched: np.ndarray,
    warp: np.ndarray,
    side: int,
    criteria: tuple[int, int, float],
) -> tuple[np.ndarray | None, float]:
    """Refine ``warp`` (crop -> answer pixels) by ECC at ``side`` pixels; (None, 0) if it
    does not converge."""
    h, w = template.shape
    f = min(1.0, side / max(w, h))
    # The answer shrinks to the template's resolution, so ECC's sampling of it does not
    # alias; the warp is carried into the shrunken images' pixel grids and back.
    s = math.sqrt(abs(float(np.linalg.det(warp[:, :2].astype(np.float64))))) or 1.0
    g = min(1.0, f / s)
    small_t = _shrink(template, f).astype(np.float32)
    small_a = _shrink(answer, g).astype(np.float32)
    # A shrunken pixel counts only if every pixel it averages is untouched.
    tmask = _shrink(np.where(untouched, 255, 0).astype(np.uint8), f, small_t.shape)
    tmask = np.where(tmask == 255, 255, 0).astype(np.uint8)
    amask = np.full(small_a.shape, 255, np.uint8)
    s_t = _grid(template.shape, small_t.shape)
    s_a = _grid(answer.shape, small_a.shape)
    full = np.vstack([warp.astype(np.float64), [0, 0, 1]])
    scaled = (s_a @ full @ np.linalg.inv(s_t))[:2].astype(np.float32)
    try:
        if hasattr(cv2, "findTransformECCWithMask"):
            rho, found = cv2.findTransformECCWithMask(
                small_t, small_a, tmask, amask, scaled, cv2.MOTION_AFFINE, criteria, 5
            )
        else:  # OpenCV before 4.12: the mask applies to the template
            rho, found = cv2.findTransformECC(
                small_t, small_a, scaled, cv2.MOTION_AFFINE, criteria, tmask, 5
            )
    except cv2.error:
        return None, 0.0
    if not np.all(np.isfinite(found)):
        return None, 0.0
    back = np.linalg.inv(s_a) @ np.vstack([found.astype(np.float64), [0, 0, 1]]) @ s_t
    return back[:2].astype(np.float32), float(rho)


def _grid(before: tuple[int, ...], after: tuple[int, ...]) -> np.ndarray:
    """3x3 map of pixel coordinates under cv2.resize from ``before`` to ``after`` (h, w):
    pixel centres, x' = (x + 0.5) k - 0.5."""
    kx, ky = after[1] / before[1], after[0] / before[0]
    return np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5], [0, 0, 1]], np.float64)


def _shrink(image: np.ndarray, factor: float, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``image`` scaled by ``factor`` (at most 1) with area averaging, or to ``shape``."""
    h, w = image.shape[:2]
    size = (shape[1], shape[0]) if shape else (max(8, round(w * factor)), max(8, round(h * factor)))
    if size == (w, h):
        return image
    shrunk: np.ndarray = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return shrunk


def _plausible(warp: np.ndarray, initial: np.ndarray, w: int, h: int) -> bool:
    """Whether ``warp`` is ``initial`` corrected by no more than a model's drift."""
    change = _relative(warp, initial)
    linear = float(np.abs(change[:, :2] - np.eye(2)).max())
    shift = float(np.hypot(*change[:, 2])) / max(w, h)
    return linear <= MAX_LINEAR_CHANGE and shift <= MAX_SHIFT


def _relative(warp: np.ndarray, initial: np.ndarray) -> np.ndarray:
    """``initial``^-1 o ``warp``: the correction ECC made, in crop pixels."""
    full = np.vstack([warp.astype(np.float64), [0, 0, 1]])
    start = np.vstack([initial.astype(np.float64), [0, 0, 1]])
    change: np.ndarray = (np.linalg.inv(start) @ full)[:2]
    return change


def _check_covers(warp: np.ndarray, mask: np.ndarray, aw: int, ah: int) -> None:
    """Fail unless every masked pixel maps inside the answer (no invented border)."""
    ys, xs = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    corners = np.array(
        [[xs[0], ys[0], 1], [xs[-1], ys[0], 1], [xs[0], ys[-1], 1], [xs[-1], ys[-1], 1]],
        np.float64,
    )
    mapped = corners @ warp.astype(np.float64).T
    if (mapped < -0.5).any() or (mapped[:, 0] > aw - 0.5).any() or (mapped[:, 1] > ah - 0.5).any():
        raise AlignmentError(
            "the model's answer does not show the whole masked region (it was cropped or "
            "moved out of the picture); nothing was composited"
        )
