"""The fill engine: removes an object of any size from a photograph, on the CPU, no weights.

Two algorithms, chosen per connected part of the mask by how thick and how large it is:

- **PatchMatch** (``pypatchmatch``, exemplar-based like classic content-aware fill) for
  anything thicker than a scribble and larger than a blemish: it copies texture from
  around the hole, so a large hole gets grain, mottling and edges instead of the long
  stripes and colour wedges that diffusion-style inpainting (OpenCV's Navier-Stokes)
  smears across it. Its source is limited to a band around the hole: unrestricted, it
  copies whatever matches best from anywhere in the crop, and a face or a logo lands in
  the hole (DESIGN.md section 8).
- **Navier-Stokes** (OpenCV) for thin strokes, where PatchMatch has no room for a patch and
  a smooth continuation of the edges is exactly right, and for blemishes up to SMALL_AREA,
  which it fills as well as PatchMatch does, some 50 times faster.

Coarse to fine: PatchMatch works on the hole's box and band only, and a hole larger than
WORK_PIXELS at a reduced resolution (its own pyramid does the rest), scaled back, its edge
healed and the band's fine detail laid over it (seams.py), so the time follows a fixed
budget rather than the hole's area (PatchMatch is single-threaded and linear in the
hole). The coarser layout is also the better one on large holes: at full resolution the
shuttle's 320x500 box pulls the stand and the astronaut's sleeve into the hole.
Compositing then matches grain on a ring of unmasked pixels.

The seed drives PatchMatch's random search and which seeded squares of the band a variant
may not copy from, so variants of one fix differ in their texture and layout. Which
algorithm ran on which part, at which scale, with which band, is in
:meth:`FillEngine.last_call` (the job runner stores it with the layer;
:attr:`FillEngine.last_details` is the latest crop's); describe() names the rules and the
library versions. Tuning and the comparison with the classical engine:
scripts/bench_fill.py and BENCHMARKS.md ("Fill").
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Engine, EngineError, InpaintParams, ProgressFn
from .seams import heal_seams, restore_detail

#: A part of the mask whose inscribed radius (the largest distance from any of its pixels
#: to the nearest unmasked pixel) is at most this is a thin stroke: Navier-Stokes fills it.
THIN_RADIUS = 3.0
#: A part of at most this many pixels (a 64x64 square) is a blemish: Navier-Stokes fills
#: it as well as PatchMatch does (PSNR and SSIM within noise on 48- and 64-px holes in
#: textured photographs, no streaks at that size) in 1-3 ms instead of 80-120 ms.
SMALL_AREA = 4096
#: Navier-Stokes neighbourhood radius (OpenCV's example; the classical engine's).
NS_RADIUS = 3
#: PatchMatch patch radius: 7x7 patches. Larger ones are slower and, on photographs, worse.
PATCH_SIZE = 3
#: The source band around a hole: this fraction of the hole's inscribed radius...
BAND_RATIO = 0.5
#: ...but at least / at most this many pixels (at full resolution).
BAND_LIMITS = (24, 96)
#: Hole pixels PatchMatch works on at most; a larger hole is filled at a reduced scale.
WORK_PIXELS = 24_000
#: Gaussian sigma (pixels) of the local means whose step at the hole's edge is healed
#: (0: no healing).
SEAM_SIGMA = 4.0
#: Side (pixels) of the tiles of the band's fine detail laid over a fill made at a reduced
#: scale (0: none).
DETAIL_TILE = 16
#: Share of the source band each variant may not copy from (seeded blobs), and their size
#: (pixels at the working scale).
DROPOUT = 0.3
DROPOUT_RADIUS = 4
#: Calls whose details :meth:`FillEngine.last_call` keeps until asked (a fix has one per crop).
MAX_PENDING = 64
#: A working scale below this loses too much of the layout; the hole is then filled at it.
MIN_SCALE = 0.25

#: pypatchmatch keeps its random seed in the native library: one call at a time.
_PATCHMATCH_LOCK = threading.Lock()


@functools.cache
def _patchmatch() -> tuple[ModuleType | None, str | None]:
    """The ``patchmatch`` module, or None and why it cannot be used here."""
    try:
        import patchmatch
    except ImportError:
        return None, "pypatchmatch not installed"
    if not patchmatch.patchmatch_available:
        return None, "pypatchmatch's native library did not load"
    return patchmatch, None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class _Part:
    """A connected part of the mask (its label), how thick and how large it is."""

    label: int
    radius: float
    area: int

    @property
    def patchmatch(self) -> bool:
        """Whether PatchMatch fills it (else Navier-Stokes): thick and large enough."""
        return self.radius > THIN_RADIUS and self.area > SMALL_AREA


class FillEngine(Engine):
    """Removes what the mask covers: texture from around it (PatchMatch), or a smooth
    continuation for thin strokes (Navier-Stokes). Ignores the prompt; the seed varies it."""

    kind: ClassVar[str] = "edit"
    name: ClassVar[str] = "fill"
    models: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[frozenset[str]] = frozenset({"seed"})
    hosted: ClassVar[bool] = False
    bucket = None

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        return _patchmatch()[1]

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        if model:
            raise EngineError(f"the fill engine has no models to choose from (asked for {model!r})")
        module, reason = _patchmatch()
        if module is None:
            raise EngineError(f"the fill engine cannot run here: {reason}")
        self._pm = module
        #: What the latest :meth:`inpaint` did (algorithm per part, scale, band, seconds).
        self.last_details: dict[str, Any] = {}
        self._calls = threading.local()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "algorithms": {
                "patchmatch": (
                    f"parts over {THIN_RADIUS:g} px thick (inscribed radius) "
                    f"and over {SMALL_AREA} px"
                ),
                "navier_stokes": "the other parts: thin strokes and small blemishes",
            },
            "patch_size": PATCH_SIZE,
            "band": {"ratio": BAND_RATIO, "limits": list(BAND_LIMITS)},
            "work_pixels": WORK_PIXELS,
            "dropout": DROPOUT,
            "seam_sigma": SEAM_SIGMA,
            "detail_tile": DETAIL_TILE,
            "pypatchmatch": _version("pypatchmatch"),
            "opencv": cv2.__version__,
            "device": "cpu",
            "prompt_used": False,
            "seed_used": True,
        }

    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        params: InpaintParams,
        progress: ProgressFn,
    ) -> np.ndarray:
        """Fill ``mask`` of ``image``: the thick parts by PatchMatch, then the thin ones."""
        _check_inputs(image, mask)
        started = time.perf_counter()
        labels, parts = _parts(mask)
        thick = [p for p in parts if p.patchmatch]
        thin = [p for p in parts if not p.patchmatch]
        total = int(bool(thick)) + int(bool(thin))
        out = image.copy()
        # What was under the mask must not reach the fill (OpenCV's Navier-Stokes reads it
        # a little; a hidden object would tint its own replacement).
        out[mask] = 0
        details: dict[str, Any] = {
            "parts": len(parts),
            "patchmatch_parts": len(thick),
            "navier_stokes_parts": len(thin),
        }
        step = 0
        lookup = np.zeros(len(parts) + 1, np.bool_)
        for part in thin:
            lookup[part.label] = True
        thin_mask = lookup[labels]
        if thick:
            thick_mask = mask & ~thin_mask
            radius = max(p.radius for p in thick)
            details["patchmatch"] = self._patchmatch(out, thick_mask, thin_mask, radius, params)
            step += 1
            progress(step, total, out)
        if thin:
            t0 = time.perf_counter()
            out = _navier_stokes(out, thin_mask)
            details["navier_stokes"] = {
                "pixels": int(np.count_nonzero(thin_mask)),
                "radius": NS_RADIUS,
                "seconds": round(time.perf_counter() - t0, 4),
            }
            step += 1
            progress(step, total, out)
        details["seconds"] = round(time.perf_counter() - started, 4)
        self.last_details = details
        calls = self._pending()
        calls.append(details)
        del calls[:-MAX_PENDING]
        return out

    def _pending(self) -> list[dict[str, Any]]:
        pending: list[dict[str, Any]] | None = getattr(self._calls, "pending", None)
        if pending is None:
            pending = self._calls.pending = []
        return pending

    def last_call(self) -> dict[str, Any]:
        """What this thread's inpaint calls since the previous ask did, one entry per crop
        (the job runner asks once per fix and stores the answer with the layer)."""
        pending = self._pending()
        crops, pending[:] = list(pending), []
        return {"fill": crops}

    def _patchmatch(
        self,
        out: np.ndarray,
        hole: np.ndarray,
        exclude: np.ndarray,
        radius: float,
        params: InpaintParams,
    ) -> dict[str, Any]:
        """Fill ``hole`` of ``out`` in place from a band around it (never from ``exclude``)."""
        t0 = time.perf_counter()
        height, width = hole.shape
        band = round(min(max(BAND_RATIO * radius, BAND_LIMITS[0]), BAND_LIMITS[1]))
        # Work on the hole's box and its band only: PatchMatch's cost has a term in the
        # image's size, and nothing outside the band may be a source anyway.
        x, y, w, h = cv2.boundingRect(hole.view(np.uint8))
        x0, y0 = max(x - band, 0), max(y - band, 0)
        x1, y1 = min(x + w + band, width), min(y + h + band, height)
        sub = np.ascontiguousarray(out[y0:y1, x0:x1])
        sub_hole = hole[y0:y1, x0:x1]
        outside = np.where(sub_hole, 0, 255).astype(np.uint8)
        distance = cv2.distanceTransform(outside, cv2.DIST_L2, 3)
        source = (distance > 0) & (distance <= band) & ~exclude[y0:y1, x0:x1]
        area = int(np.count_nonzero(sub_hole))
        scale = min(1.0, math.sqrt(WORK_PIXELS / area))
        scale = max(scale, MIN_SCALE)
        rng = np.random.default_rng(params.seed % 2**63)
        if scale < 1.0:
            work, work_hole, work_source = _shrink(sub, sub_hole, source, scale)
        else:
            work, work_hole, work_source = sub, sub_hole, source
        record: dict[str, Any] = {
            "pixels": area,
            "radius": round(radius, 1),
            "band": band,
            "scale": round(scale, 4),
            "work_size": [work.shape[1], work.shape[0]],
            "patch_size": PATCH_SIZE,
        }
        if not work_source.any():
            raise EngineError(
                "the fill engine found no unmasked pixels around the hole to copy from; "
                "leave some of the picture around the object unmasked"
            )
        dropped = _dropout(work_source, rng)
        record["source_pixels"] = int(np.count_nonzero(work_source))
        record["dropped_pixels"] = int(np.count_nonzero(dropped))
        excluded = (~work_source | dropped) & ~work_hole
        with _PATCHMATCH_LOCK:
            self._pm.set_random_seed(params.seed % 2**32)
            filled = self._pm.inpaint(work, work_hole, global_mask=excluded, patch_size=PATCH_SIZE)
        if scale < 1.0:
            size = (sub.shape[1], sub.shape[0])
            filled = cv2.resize(filled, size, interpolation=cv2.INTER_CUBIC)
            if DETAIL_TILE:
                sigma = 0.5 / scale
                filled = restore_detail(filled, sub, sub_hole, source, sigma, DETAIL_TILE, rng)
        if SEAM_SIGMA:
            filled = heal_seams(filled, sub, sub_hole, SEAM_SIGMA)
        region = out[y0:y1, x0:x1]
        region[sub_hole] = filled[sub_hole]
        record["seconds"] = round(time.perf_counter() - t0, 4)
        return record


def _check_inputs(image: np.ndarray, mask: np.ndarray) -> None:
    if not (
        isinstance(image, np.ndarray)
        and image.dtype == np.uint8
        and image.ndim == 3
        and image.shape[2] == 3
    ):
        shape = getattr(image, "shape", None)
        raise EngineError(f"expected an HxWx3 uint8 image, not {type(image).__name__} {shape}")
    if not isinstance(mask, np.ndarray) or mask.shape != image.shape[:2]:
        raise EngineError(
            f"the mask {getattr(mask, 'shape', None)} does not match the image {image.shape}"
        )
    if mask.dtype != np.bool_:
        raise EngineError(f"the mask must be boolean, not {mask.dtype}")
    if not mask.any():
        raise EngineError("the mask is empty: there is nothing to fill")
    if mask.all():
        raise EngineError("the mask covers the whole image: there is nothing to fill it from")


def _parts(mask: np.ndarray) -> tuple[np.ndarray, list[_Part]]:
    """The mask's 8-connected parts (a label image, and each part's radius and area)."""
    m8 = mask.view(np.uint8)
    count, labels = cv2.connectedComponents(m8, connectivity=8)
    # Distance to the nearest unmasked pixel; OpenCV does not count the image's border as
    # one, so a hole along the edge is as thick as it is wide (PatchMatch has no source
    # beyond the border either).
    distance = cv2.distanceTransform(m8, cv2.DIST_L2, 3)
    radii = np.zeros(count, np.float64)
    np.maximum.at(radii, labels.ravel().astype(np.intp), distance.ravel())
    areas = np.bincount(labels.ravel(), minlength=count)
    return labels, [_Part(i, float(radii[i]), int(areas[i])) for i in range(1, count)]


def _shrink(
    image: np.ndarray,
    hole: np.ndarray,
    source: np.ndarray,
    scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image, hole and source at ``scale`` (a hole pixel stays one if any part of it
    is; a source pixel only if all of it is)."""
    height, width = hole.shape
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    marked = cv2.resize(hole.view(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    valid = cv2.resize(source.view(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    small_hole = marked > 0
    # A source pixel must be wholly source: a partly masked one would copy the object.
    small_source = (valid == 255) & ~small_hole
    return np.ascontiguousarray(small), small_hole, small_source


def _dropout(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seeded squares covering about DROPOUT of the source band, which this variant may not
    copy from: PatchMatch converges to nearly the same fill from any random start (two
    seeds' fills differ by ~3/255 once blurred past the grain), so the seed varies what it
    may copy instead (~11/255), and every variant still draws from all sides."""
    height, width = source.shape
    cell = 2 * DROPOUT_RADIUS
    grid = rng.random((height // cell + 1, width // cell + 1)) < DROPOUT
    blobs = cv2.resize(grid.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    dropped: np.ndarray = source & (blobs > 0)
    # Never so much that a part of the band vanishes: keep at least half of it.
    if np.count_nonzero(dropped) > np.count_nonzero(source) // 2:
        return np.zeros_like(source)
    return dropped


def _navier_stokes(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with ``mask`` filled by OpenCV's Navier-Stokes method."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    filled = cv2.inpaint(bgr, mask.view(np.uint8), NS_RADIUS, cv2.INPAINT_NS)
    return cv2.cvtColor(filled, cv2.COLOR_BGR2RGB)
