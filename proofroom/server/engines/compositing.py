"""Compositing: run an engine on crops around the mask and keep every other pixel exact.

DESIGN.md section 6.3, in order: a crop with context around each part of the mask, a resize
to the engine's bucket with a denoise mask on the 8-pixel latent grid (bucketed engines
only), colour and grain matching on a ring of unmasked pixels, a feathered alpha that is
zero outside the mask, a float composite, and a check that composites the patch the way the
export does and compares every pixel outside the mask with the parent, bit for bit.

Cost follows the mask, not the image: the parent is only sliced, and the only passes over
the whole mask find its bounding box and check that it is not empty or full.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ...shared.errors import BadRequest
from .base import Engine, EngineError, FixResult, InpaintParams, ProgressFn
from .matching import match_colour, match_grain, ring_mask
from .progress import Preview, Progress

logger = logging.getLogger(__name__)

Box = tuple[int, int, int, int]

#: Context around a part of the mask: at least this many pixels on each side...
MIN_CONTEXT = 32
#: ...or this fraction of the part's longer side, which keeps crops within 2:1.
CONTEXT_RATIO = 0.5
#: Latent cells of a diffusion model: the denoise mask is snapped to this grid.
LATENT_GRID = 8
#: How far (bucket pixels) the denoise mask grows before it is snapped.
DENOISE_GROW = 8
#: Gaussian sigma (pixels) of the feather at the mask's edge.
FEATHER_SIGMA = 1.0

_KERNEL3 = np.ones((3, 3), np.uint8)


class InvalidMask(BadRequest, ValueError):
    """A mask that cannot be fixed: wrong size or type, empty, or covering everything."""

    code = "invalid_mask"


class CompositeError(EngineError, RuntimeError):
    """The composite changed a pixel outside the mask: a bug, so the fix is not stored."""

    status, code = 500, "composite_error"


@dataclass(frozen=True)
class _Crop:
    """One engine call: a box of the parent and the mask pixels it owns."""

    box: Box
    components: int


def run_fix(
    parent: np.ndarray,
    mask: np.ndarray,
    engine: Engine,
    params: InpaintParams,
    progress: ProgressFn,
) -> FixResult:
    """Fill ``mask`` (HxW bool) of ``parent`` (HxWx3 uint8 RGB) with ``engine``.

    Returns an RGBA patch of the mask's bounding box whose alpha is 0 wherever the mask is
    False. Raises InvalidMask (a ValueError) for a mask that cannot be fixed and
    CompositeError if the result would change a pixel outside the mask. ``progress`` gets
    (step, total) summed over all crops and a preview of the masked region (or None).
    """
    started = time.perf_counter()
    box = _validate(parent, mask)
    crops = _crops(mask, box)
    height, width = mask.shape
    patch = np.zeros((box[3], box[2], 4), np.uint8)
    reporter = Progress(progress, Preview(parent, mask, box, [c.box for c in crops]))
    records = []
    for index, crop in enumerate(crops):
        fill, alpha, record = _fix_crop(parent, mask, crop, engine, params, index, reporter)
        _paste(patch, box, crop.box, fill, alpha)
        records.append(record)
    _check(parent, mask, patch, box)
    details = {
        "compositing": {
            "image": [width, height],
            "box": list(box),
            "mask_pixels": int(sum(r["mask_pixels"] for r in records)),
            "mask_sha256": mask_digest(mask, box),
            "bucket": engine.bucket,
            "crops": records,
            "seconds": round(time.perf_counter() - started, 4),
        }
    }
    logger.debug(
        "fixed %d pixels in %d crops of %s", details["compositing"]["mask_pixels"], len(crops), box
    )
    return FixResult(patch=patch, box=box, crops=[c.box for c in crops], details=details)


def composite_region(region: np.ndarray, patch: np.ndarray) -> np.ndarray:
    """``region`` (hxwx3 uint8) with the RGBA ``patch`` over it, exactly as export shows it.

    With ``a = A / 255`` in float32: a pixel whose alpha is 0 keeps the parent's value;
    any other becomes ``rint(parent * (1 - a) + fill * a)`` (round half to even).
    """
    if patch.dtype != np.uint8 or patch.ndim != 3 or patch.shape[2] != 4:
        raise ValueError(f"a patch must be an RGBA uint8 array, not {_describe(patch)}")
    if patch.shape[:2] != region.shape[:2]:
        raise ValueError(
            f"the patch is {patch.shape[1]}x{patch.shape[0]} but its box is "
            f"{region.shape[1]}x{region.shape[0]}"
        )
    a = patch[..., 3:4].astype(np.float32) / np.float32(255)
    mixed = region.astype(np.float32) * (np.float32(1) - a) + patch[..., :3] * a
    out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return np.where(patch[..., 3:4] == 0, region, out)


def apply_patch(parent: np.ndarray, patch: np.ndarray, box: Box) -> np.ndarray:
    """A copy of ``parent`` with ``patch`` composited at ``box`` ([x, y, w, h])."""
    x, y, w, h = box
    height, width = parent.shape[:2]
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"the box {list(box)} is not inside the {width}x{height} image")
    out = parent.copy()
    out[y : y + h, x : x + w] = composite_region(parent[y : y + h, x : x + w], patch)
    return out


def mask_digest(mask: np.ndarray, box: Box) -> str:
    """sha256 of ``"WxH:x,y,w,h:"`` and the bits of ``mask`` inside its box ``box``, packed
    row by row (numpy.packbits): identifies the mask without reading the whole image."""
    x, y, w, h = box
    height, width = mask.shape
    digest = hashlib.sha256(f"{width}x{height}:{x},{y},{w},{h}:".encode())
    digest.update(np.packbits(mask[y : y + h, x : x + w]).tobytes())
    return digest.hexdigest()


# -- validation and crops -----------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def _validate(parent: np.ndarray, mask: np.ndarray) -> Box:
    """The mask's bounding box, after checking both arrays."""
    if not (
        isinstance(parent, np.ndarray)
        and parent.dtype == np.uint8
        and parent.ndim == 3
        and parent.shape[2] == 3
        and parent.size
    ):
        raise ValueError(f"the image must be an HxWx3 uint8 RGB array, not {_describe(parent)}")
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise InvalidMask(f"the mask must be a 2-D array, not {_describe(mask)}")
    if mask.dtype != np.bool_:
        raise InvalidMask(f"the mask must be boolean, not {mask.dtype}")
    height, width = parent.shape[:2]
    if mask.shape != (height, width):
        raise InvalidMask(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
            "they must be the same size"
        )
    # The only passes over the whole mask: which rows and columns hold masked pixels.
    rows = np.asarray(mask.any(axis=1))
    cols = np.asarray(mask.any(axis=0))
    if not rows.any():
        raise InvalidMask("the mask is empty: mark the pixels to fix")
    y, x = int(rows.argmax()), int(cols.argmax())
    h = height - int(rows[::-1].argmax()) - y
    w = width - int(cols[::-1].argmax()) - x
    if (w, h) == (width, height) and mask.all():
        raise InvalidMask("the mask covers the whole image: leave unmasked pixels as context")
    return (x, y, w, h)


def context_box(part: Box, width: int, height: int) -> Box:
    """The crop around ``part`` of the mask: padded, shifted inward at the image's edges."""
    x, y, w, h = part
    pad = max(MIN_CONTEXT, math.ceil(CONTEXT_RATIO * max(w, h)))
    cw, ch = min(w + 2 * pad, width), min(h + 2 * pad, height)
    cx = min(max(x - pad, 0), width - cw)
    cy = min(max(y - pad, 0), height - ch)
    return (cx, cy, cw, ch)


def _crops(mask: np.ndarray, box: Box) -> list[_Crop]:
    """One crop per group of mask components whose crops overlap, so crops are disjoint."""
    bx, by, bw, bh = box
    height, width = mask.shape
    region = np.ascontiguousarray(mask[by : by + bh, bx : bx + bw]).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    boxes = []
    for x, y, w, h, _area in stats[1:count]:
        cx, cy, cw, ch = context_box((bx + int(x), by + int(y), int(w), int(h)), width, height)
        boxes.append([cx, cy, cx + cw, cy + ch, 1])
    merged = _merge(boxes)
    merged.sort(key=lambda b: (b[1], b[0]))
    return [_Crop((x0, y0, x1 - x0, y1 - y0), n) for x0, y0, x1, y1, n in merged]


def _merge(boxes: list[list[int]]) -> list[list[int]]:
    """Merge [x0, y0, x1, y1, count] boxes until no two share a pixel."""
    b = np.array(boxes, np.int64).reshape(-1, 5)
    alive = np.ones(len(b), np.bool_)
    for i in range(len(b)):
        while alive[i]:
            x0, y0, x1, y1, _ = b[i]
            hit = alive & (b[:, 0] < x1) & (x0 < b[:, 2]) & (b[:, 1] < y1) & (y0 < b[:, 3])
            hit[i] = False
            if not hit.any():
                break
            b[i, :2] = np.minimum(b[i, :2], b[hit, :2].min(axis=0))
            b[i, 2:4] = np.maximum(b[i, 2:4], b[hit, 2:4].max(axis=0))
            b[i, 4] += b[hit, 4].sum()
            alive[hit] = False
    return [[int(v) for v in row] for row in b[alive]]


# -- one crop -------------------------------------------------------------------------------


def _fix_crop(
    parent: np.ndarray,
    mask: np.ndarray,
    crop: _Crop,
    engine: Engine,
    params: InpaintParams,
    index: int,
    reporter: Progress,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The matched fill (uint8 RGB) and alpha (uint8) of one crop, and its provenance."""
    x, y, w, h = crop.box
    image = parent[y : y + h, x : x + w].copy()
    cmask = mask[y : y + h, x : x + w].copy()
    record: dict[str, Any] = {
        "box": list(crop.box),
        "components": crop.components,
        "mask_pixels": int(np.count_nonzero(cmask)),
    }
    started = time.perf_counter()
    if engine.bucket is None:
        fill = engine.inpaint(image.copy(), cmask.copy(), params, reporter.crop(index, (1, 1)))
        _check_engine_output(engine, fill, (h, w))
        reference = image
    else:
        fill, reference = _run_bucketed(engine, image, cmask, params, reporter, index, record)
    record["engine_s"] = round(time.perf_counter() - started, 4)
    if engine.match_context:
        ring = ring_mask(cmask)
        matched, record["colour"] = match_colour(fill, reference, cmask, ring)
        rng = np.random.default_rng([params.seed % 2**63, index])
        matched, record["grain"] = match_grain(matched, image, cmask, ring, rng)
    else:  # the engine keeps the masked pixels' own texture (a recolour): nothing to match
        matched = fill.astype(np.float32)
        # A recolour keeps the pixels' own texture; a hosted engine fits them itself.
        record["colour"] = record["grain"] = {"skipped": "left to the engine"}
    fill8 = np.clip(np.rint(matched), 0, 255).astype(np.uint8)
    alpha = np.rint(composite_alpha(cmask) * 255).astype(np.uint8)
    reporter.crop_done(index, fill8)
    return fill8, alpha, record


def _check_engine_output(engine: Engine, fill: Any, shape: tuple[int, int]) -> None:
    if not (isinstance(fill, np.ndarray) and fill.dtype == np.uint8 and fill.shape == (*shape, 3)):
        raise EngineError(
            f"the {engine.name} engine returned {_describe(fill)}; "
            f"expected a {shape[1]}x{shape[0]} RGB uint8 image"
        )


def _run_bucketed(
    engine: Engine,
    image: np.ndarray,
    mask: np.ndarray,
    params: InpaintParams,
    reporter: Progress,
    index: int,
    record: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Run the engine on the crop resized into its bucket. Returns the fill at crop size and
    the crop as the bucket's resolution shows it (what colour matching compares it with)."""
    bucket = engine.bucket
    if bucket is None or bucket <= 0 or bucket % LATENT_GRID:
        raise EngineError(f"the {engine.name} engine's bucket {bucket} is not a multiple of 8")
    h, w = mask.shape
    scale = bucket / max(w, h)
    rw, rh = max(1, min(bucket, round(w * scale))), max(1, min(bucket, round(h * scale)))
    shrink = scale < 1
    resized = cv2.resize(
        image, (rw, rh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )
    # The crop's long side fills the bucket; the rest is mirrored context, never masked.
    framed = cv2.copyMakeBorder(resized, 0, bucket - rh, 0, bucket - rw, cv2.BORDER_REFLECT)
    # 255, not 1: a pixel of the bucket that a masked pixel only partly covers stays masked.
    marked = np.where(mask, 255, 0).astype(np.uint8)
    small = cv2.resize(marked, (rw, rh), interpolation=cv2.INTER_AREA) > 0
    denoise = np.zeros((bucket, bucket), np.bool_)
    denoise[:rh, :rw] = small
    denoise = denoise_mask(denoise)
    record.update(bucket=bucket, resized=[rw, rh], denoise_pixels=int(np.count_nonzero(denoise)))
    out = engine.inpaint(framed, denoise, params, reporter.crop(index, (rw / bucket, rh / bucket)))
    _check_engine_output(engine, out, (bucket, bucket))
    back = cv2.INTER_CUBIC if shrink else cv2.INTER_AREA
    return (
        cv2.resize(out[:rh, :rw], (w, h), interpolation=back),
        cv2.resize(resized, (w, h), interpolation=back),
    )


def denoise_mask(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by DENOISE_GROW pixels, then every 8x8 latent cell it touches."""
    size = 2 * DENOISE_GROW + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    grown = cv2.dilate(mask.astype(np.uint8), kernel)
    h, w = mask.shape
    g = LATENT_GRID
    cells = grown.reshape(h // g, g, w // g, g).any(axis=(1, 3))
    return np.repeat(np.repeat(cells, g, axis=0), g, axis=1)


def composite_alpha(mask: np.ndarray) -> np.ndarray:
    """Float32 alpha: the mask shrunk by a pixel, feathered, then clamped to the mask.

    Parts too thin to shrink (a scratch one or two pixels wide) are replaced outright.
    """
    m8 = mask.astype(np.uint8)
    core = cv2.erode(m8, _KERNEL3)
    thin = mask & (cv2.dilate(core, _KERNEL3) == 0)
    alpha = cv2.GaussianBlur(
        core.astype(np.float32), (0, 0), FEATHER_SIGMA, borderType=cv2.BORDER_REPLICATE
    )
    alpha = np.maximum(alpha, thin.astype(np.float32))
    clamped: np.ndarray = alpha * mask
    return clamped


# -- the patch and its check ----------------------------------------------------------------


def _paste(patch: np.ndarray, box: Box, crop: Box, fill: np.ndarray, alpha: np.ndarray) -> None:
    """Write a crop's fill and alpha into the patch where the two boxes meet."""
    bx, by, bw, bh = box
    cx, cy, cw, ch = crop
    x0, y0 = max(bx, cx), max(by, cy)
    x1, y1 = min(bx + bw, cx + cw), min(by + bh, cy + ch)
    if x1 <= x0 or y1 <= y0:
        return
    a = alpha[y0 - cy : y1 - cy, x0 - cx : x1 - cx]
    rgb = fill[y0 - cy : y1 - cy, x0 - cx : x1 - cx]
    target = patch[y0 - by : y1 - by, x0 - bx : x1 - bx]
    # Only where this crop has alpha: colour under alpha 0 stays 0 (smaller PNGs).
    mine = a > 0
    target[mine, :3] = rgb[mine]
    target[mine, 3] = a[mine]


def _check(parent: np.ndarray, mask: np.ndarray, patch: np.ndarray, box: Box) -> None:
    """Fail loudly unless the patch leaves every pixel outside the mask as the parent's."""
    x, y, w, h = box
    region = parent[y : y + h, x : x + w]
    outside = ~mask[y : y + h, x : x + w]
    leaks = outside & (patch[..., 3] != 0)
    changed = outside & (composite_region(region, patch) != region).any(axis=2)
    for what, bad in (("has alpha on", leaks), ("changes", changed)):
        if bad.any():
            rows, cols = np.nonzero(bad)
            raise CompositeError(
                f"the composite {what} {rows.size} pixels outside the mask (the first at "
                f"x={x + int(cols[0])}, y={y + int(rows[0])}); the fix was not stored"
            )
