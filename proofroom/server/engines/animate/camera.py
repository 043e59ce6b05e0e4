"""The camera engine: a deterministic camera move over a still, no weights, CPU only.

A move is a window over the still that changes from frame to frame (a push-in, a pan) and is
resampled to the output size; the first frame's window is the whole still, so the clip opens
on the picture the reviewers approved. Windows always stay inside the still: nothing past
its edges is ever shown, so there is no smearing or mirrored border to hide.

``parallax`` treats the session's layer masks as cut-outs at their depths: the background
(the still with the cut-outs filled in) moves least, nearer cut-outs further, as seen from a
camera trucking sideways while it pushes in. Where a near cut-out moves away it uncovers
background the still never showed; that is filled by a push-pull pyramid (smooth, no
streaks), and the moves are gentle enough (a few percent of the width) that only thin bands
are ever uncovered. Cut-outs are solid on their mask plus a small grown margin and feathered
past it, so the first frame is still the still.

Same still, same parameters: same frames, bit for bit (no randomness; OpenCV's warps are
deterministic), and the encoders run with fixed settings.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..base import EngineError, ProgressFn
from ..kinds import AnimateEngine, ClipResult, ClipSpec
from .encode import ClipWriter, even_size

#: Camera moves, as ``ClipSpec.motion`` names them.
MOTIONS = ("push-in", "pan-left", "pan-right", "parallax")
#: How far each move zooms by its last frame (1.0: not at all).
PUSH_ZOOM = 1.18
PAN_ZOOM = 1.2
#: Parallax: the background's zoom and sideways travel (fractions of the frame width), and
#: what a cut-out at depth 1 (nearest) adds to each.
PARALLAX_ZOOM = 1.06
PARALLAX_TRAVEL = 0.025
NEAR_ZOOM = 0.05
NEAR_TRAVEL = 0.035
#: Resampling of every frame. Bilinear: a move never magnifies by more than 1.25, where
#: bicubic is not visibly sharper and costs three times as much (14 against 5 ms a 720p
#: frame here, a third of the clip's time budget).
INTERPOLATION = cv2.INTER_LINEAR
#: Longest side of a progress preview.
PREVIEW_SIDE = 256


def ease(t: float) -> float:
    """Smoothstep: starts and ends at rest, so a move has no jolt at either end."""
    return t * t * (3.0 - 2.0 * t)


@dataclass(frozen=True)
class Window:
    """Part of the working still shown at one moment: centre and width (pixels)."""

    cx: float
    cy: float
    width: float

    def matrix(self, out_w: int, out_h: int) -> np.ndarray:
        """The affine map from working-still pixels to output pixels (pixel centres)."""
        k = out_w / self.width
        left = self.cx - self.width / 2
        top = self.cy - (self.width * out_h / out_w) / 2
        return np.array(
            [[k, 0.0, (0.5 - left) * k - 0.5], [0.0, k, (0.5 - top) * k - 0.5]], np.float64
        )


@dataclass(frozen=True)
class Cutout:
    """One depth plane: its box of the still, its feathered alpha there, its depth."""

    rgb: np.ndarray
    alpha: np.ndarray
    origin: tuple[int, int]
    depth: float

    def paint(self, frame: np.ndarray, matrix: np.ndarray) -> None:
        """Composite the cut-out over ``frame`` (in place), placed by ``matrix``."""
        x0, y0 = self.origin
        h, w = self.alpha.shape
        m = matrix.copy()
        m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # box pixels -> output pixels
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ m.T
        fh, fw = frame.shape[:2]
        left = max(0, math.floor(corners[:, 0].min()) - 1)
        top = max(0, math.floor(corners[:, 1].min()) - 1)
        right = min(fw, math.ceil(corners[:, 0].max()) + 2)
        bottom = min(fh, math.ceil(corners[:, 1].max()) + 2)
        if right <= left or bottom <= top:
            return
        m[:, 2] -= (left, top)
        size = (right - left, bottom - top)
        colour = cv2.warpAffine(
            self.rgb, m, size, flags=INTERPOLATION, borderMode=cv2.BORDER_REPLICATE
        ).astype(np.float32)
        alpha = cv2.warpAffine(self.alpha, m, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        region = frame[top:bottom, left:right]
        under = region.astype(np.float32)
        region[...] = np.clip(np.rint(under + (colour - under) * alpha), 0, 255).astype(np.uint8)


class Rig:
    """The still (at working resolution), its layers, and the window of each at time t."""

    def __init__(
        self,
        rgb: np.ndarray,
        out_w: int,
        out_h: int,
        motion: str,
        planes: tuple[tuple[np.ndarray, float], ...],
    ) -> None:
        self.out_w, self.out_h, self.motion = out_w, out_h, motion
        h, w = rgb.shape[:2]
        # The base window: the largest of the output's aspect centred in the still.
        base_w = min(w, h * out_w / out_h)
        zoom = {"push-in": PUSH_ZOOM, "parallax": PARALLAX_ZOOM * (1 + NEAR_ZOOM)}.get(
            motion, PAN_ZOOM
        )
        # Work at the resolution the tightest window needs, no more (a 4K still for a 720p
        # clip is shrunk once here, with area averaging, rather than aliased every frame).
        self.scale = min(1.0, out_w * zoom / base_w)
        if self.scale < 1.0:
            size = (max(2, round(w * self.scale)), max(2, round(h * self.scale)))
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        self.rgb = np.ascontiguousarray(rgb)
        self.h, self.w = self.rgb.shape[:2]
        self.base_w = min(self.w, self.h * out_w / out_h)
        self.layers: list[Cutout] = []
        self.background = self.rgb
        if motion == "parallax" and planes:
            self._cut(planes)

    def _cut(self, planes: tuple[tuple[np.ndarray, float], ...]) -> None:
        diag = math.hypot(self.w, self.h)
        grow = max(2, round(0.0015 * diag))
        feather = max(2.0, 0.004 * diag)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        holes = np.zeros((self.h, self.w), bool)
        for mask, depth in sorted(planes, key=lambda p: p[1]):
            if mask.shape != self.rgb.shape[:2]:
                mask = (
                    cv2.resize(
                        mask.astype(np.float32), (self.w, self.h), interpolation=cv2.INTER_AREA
                    )
                    > 0.5
                )
            if not mask.any():
                continue
            solid = cv2.dilate(mask.astype(np.uint8), kernel) > 0
            # Solid on the grown mask, fading to nothing ``feather`` pixels past it.
            outside = cv2.distanceTransform((~solid).astype(np.uint8), cv2.DIST_L2, 5)
            alpha = np.clip(1.0 - outside / feather, 0.0, 1.0).astype(np.float32)
            # Only the cut-out's box is warped each frame, not the whole still.
            x, y, w, h = cv2.boundingRect((alpha > 0).astype(np.uint8))
            box = (slice(y, y + h), slice(x, x + w))
            self.layers.append(
                Cutout(
                    np.ascontiguousarray(self.rgb[box]),
                    np.ascontiguousarray(alpha[box]),
                    (x, y),
                    float(np.clip(depth, 0.0, 1.0)),
                )
            )
            holes |= solid
        if holes.any():
            self.background = fill_holes(self.rgb, holes)

    def window(self, t: float, depth: float | None = None) -> Window:
        """The window at time ``t`` (0..1) for the background, or a cut-out at ``depth``."""
        e = ease(t)
        cx, cy, base = self.w / 2, self.h / 2, self.base_w
        if self.motion == "push-in":
            width = base / (1 + (PUSH_ZOOM - 1) * e)
        elif self.motion in ("pan-left", "pan-right"):
            # Zoom early (ease-out) and travel evenly, so there is room to travel into.
            zoom = 1 + (PAN_ZOOM - 1) * (1 - (1 - t) ** 2)
            width = base / zoom
            reach = (self.w - base / PAN_ZOOM) / 2
            cx += (-1 if self.motion == "pan-left" else 1) * reach * e
        else:
            d = depth or 0.0
            width = base / ((1 + (PARALLAX_ZOOM - 1) * e) * (1 + NEAR_ZOOM * d * e))
            cx += (PARALLAX_TRAVEL + NEAR_TRAVEL * d) * base * e
        if depth is None:  # the background's window never leaves the still
            height = width * self.out_h / self.out_w
            cx = min(max(cx, width / 2), self.w - width / 2)
            cy = min(max(cy, height / 2), self.h - height / 2)
        return Window(cx, cy, width)

    def frame(self, t: float) -> np.ndarray:
        """The output frame at time ``t`` (0..1), HxWx3 uint8."""
        size = (self.out_w, self.out_h)
        matrix = self.window(t).matrix(*size)
        background = cv2.warpAffine(
            self.background, matrix, size, flags=INTERPOLATION, borderMode=cv2.BORDER_REPLICATE
        )
        if not self.layers:
            return background
        for cut in self.layers:
            m = self.window(t, cut.depth).matrix(*size)
            cut.paint(background, m)
        return background


def fill_holes(rgb: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """``rgb`` with ``holes`` filled smoothly from their surroundings (push-pull pyramid)."""
    known: np.ndarray = (~holes).astype(np.float32)
    colour: np.ndarray = rgb.astype(np.float32) * known[..., None]
    levels = []
    while min(known.shape) > 8:
        levels.append((colour, known))
        colour, known = cv2.pyrDown(colour), cv2.pyrDown(known)
    estimate = colour / np.maximum(known, 1e-6)[..., None]
    for colour, known in reversed(levels):
        h, w = known.shape
        up = cv2.pyrUp(estimate, dstsize=(w, h))
        here = colour / np.maximum(known, 1e-6)[..., None]
        weight = np.clip(known * 4.0, 0.0, 1.0)[..., None]
        estimate = here * weight + up * (1.0 - weight)
    filled = np.clip(np.rint(estimate), 0, 255).astype(np.uint8)
    out = rgb.copy()
    out[holes] = filled[holes]
    return out


def frame_count(seconds: float, fps: int) -> int:
    """Frames in a clip of ``seconds`` at ``fps`` (at least one)."""
    return max(1, round(seconds * fps))


def check_spec(spec: ClipSpec) -> None:
    """Refuse a spec no engine can make, with the reason."""
    if not (isinstance(spec.fps, int) and 1 <= spec.fps <= 120):
        raise EngineError(f"fps must be a whole number from 1 to 120, not {spec.fps!r}")
    if not (math.isfinite(spec.seconds) and spec.seconds > 0):
        raise EngineError(f"seconds must be positive, not {spec.seconds!r}")


def preview_of(frame: np.ndarray) -> np.ndarray:
    """A small copy of ``frame`` for progress events."""
    h, w = frame.shape[:2]
    k = PREVIEW_SIDE / max(h, w)
    if k >= 1:
        return frame.copy()
    size = (max(1, round(w * k)), max(1, round(h * k)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def encode_clip(
    render: Callable[[int], np.ndarray],
    frames: int,
    fps: int,
    width: int,
    height: int,
    out_dir: Path,
    progress: ProgressFn,
) -> tuple[Path, Path, np.ndarray, dict[str, Any]]:
    """Render ``frames`` frames with ``render(i)`` into both renditions in ``out_dir``.

    Progress after every frame, with a small preview a few times a second of clip. On any
    failure (JobCancelled included) the half-written files are removed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    mp4, webm = out_dir / "clip.mp4", out_dir / "clip.webm"
    every = max(1, fps // 4)
    poster: np.ndarray | None = None
    try:
        with ClipWriter(mp4, webm, width, height, fps) as writer:
            for i in range(frames):
                rgb = render(i)
                if poster is None:
                    poster = rgb.copy()
                writer.write(rgb)
                progress(i + 1, frames, preview_of(rgb) if i % every == 0 else None)
    except BaseException:
        for path in (mp4, webm):
            path.unlink(missing_ok=True)
        raise
    assert poster is not None
    return mp4, webm, poster, writer.details()


class CameraEngine(AnimateEngine):
    """Push-in, pan or parallax over the still; CPU, no weights, deterministic."""

    name: ClassVar[str] = "camera"
    params: ClassVar[frozenset[str]] = frozenset({"seconds", "fps", "motion"})

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "motions": list(MOTIONS),
            "opencv": cv2.__version__,
            "pyav": _version("av"),
        }

    def animate(
        self, image: np.ndarray, spec: ClipSpec, out_dir: Path, progress: ProgressFn
    ) -> ClipResult:
        check_spec(spec)
        if spec.motion not in MOTIONS:
            raise EngineError(f"unknown motion {spec.motion!r}; choose one of {list(MOTIONS)}")
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise EngineError(f"the still must be HxWx3 or HxWx4 uint8, not {image.shape}")
        width, height, rounded = even_size(spec.width, spec.height)
        rgb = image[..., :3]
        rig = Rig(rgb, width, height, spec.motion, spec.planes)
        frames = frame_count(spec.seconds, spec.fps)
        last = max(1, frames - 1)
        mp4, webm, poster, codecs = encode_clip(
            lambda i: rig.frame(i / last), frames, spec.fps, width, height, out_dir, progress
        )
        details: dict[str, Any] = {
            **self.describe(),
            "motion": spec.motion,
            "ease": "smoothstep",
            "working_scale": round(rig.scale, 6),
            "planes": len(rig.layers),
            "encoding": codecs,
        }
        notes = [rounded] if rounded else []
        if image.shape[2] == 4:
            notes.append("the still's alpha was dropped (clips are opaque)")
        if spec.motion != "parallax" and spec.planes:
            notes.append(f"{len(spec.planes)} depth planes ignored: only parallax uses them")
        if spec.motion == "parallax" and not rig.layers:
            notes.append("no depth planes: parallax moved the still as one plane")
        if notes:
            details["warnings"] = notes
        return ClipResult(mp4, webm, poster, frames, spec.fps, width, height, details)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
