"""The interfaces of the ``upscale`` and ``animate`` job kinds, beside the edit one (base.py).

Engines of each kind subclass these; the class attributes mean what they mean on
:class:`~.base.Engine` (``name``, ``models``, ``params``, ``hosted``, :meth:`availability`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import ProgressFn


@dataclass(frozen=True)
class UpscaleParams:
    """What an upscale asked for, resolved to an exact output size."""

    factor: float  # the size ratio asked for (target sizes become a factor)
    width: int  # exact output size
    height: int
    prompt: str = ""  # for diffusion refine
    seed: int = 0
    strength: float = 0.25  # diffusion refine denoise
    tile: int = 512  # spandrel / refine tile side (halved on out-of-memory)


class _KindEngine(ABC):
    """What every engine of a kind declares (the same attributes as an edit engine)."""

    kind: ClassVar[str]
    #: Registry name.
    name: ClassVar[str]
    #: Models it can run, the default first; empty when it has none to choose from.
    models: ClassVar[tuple[str, ...]] = ()
    #: Which request parameters it uses; the rest it ignores.
    params: ClassVar[frozenset[str]] = frozenset()
    #: Calls a remote service: runs beside the local worker, not on it.
    hosted: ClassVar[bool] = False

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        self.model = model or (self.models[0] if self.models else None)
        self.settings = settings

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        """None when the engine can run on this server, else a short reason for users."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance: model, device, library versions, dtype... (JSON-compatible)."""


class UpscaleEngine(_KindEngine):
    """An upscale engine: a whole picture in, the same picture larger out."""

    kind: ClassVar[str] = "upscale"

    @abstractmethod
    def upscale(self, image: np.ndarray, params: UpscaleParams, progress: ProgressFn) -> np.ndarray:
        """HxWx3 or HxWx4 uint8 in; exactly params.height x params.width, same channels,
        uint8 out (alpha carried: resampled, never invented). progress(step, total, preview)
        as for edits; let JobCancelled propagate."""


@dataclass(frozen=True)
class ClipSpec:
    """What a clip asked for."""

    seconds: float
    fps: int
    width: int  # output size (even numbers: H.264 needs them; engines round
    height: int  #   and say so in details)
    motion: str = "push-in"  # camera: push-in | pan-left | pan-right | parallax
    prompt: str = ""
    seed: int = 0
    #: Depth planes for parallax: (mask HxW bool at the still's size, depth 0 far..1 near),
    #: from the session's approved layers' masks; may be empty.
    planes: tuple[tuple[np.ndarray, float], ...] = ()


@dataclass(frozen=True)
class ClipResult:
    """A clip as written: both renditions, the poster, and what was done to make it."""

    mp4: Path  # H.264 / yuv420p, faststart
    webm: Path  # VP9
    poster: np.ndarray  # HxWx3 uint8, the first frame
    frames: int
    fps: int
    width: int
    height: int
    details: dict[str, Any]  # provenance: codec settings, library versions, rounding done


class AnimateEngine(_KindEngine):
    """An animate engine: a still in, a short clip out."""

    kind: ClassVar[str] = "animate"

    @abstractmethod
    def animate(
        self, image: np.ndarray, spec: ClipSpec, out_dir: Path, progress: ProgressFn
    ) -> ClipResult:
        """Write both renditions into out_dir; deterministic for the same inputs where the
        engine can be (camera always). progress per frame/step; JobCancelled propagates."""
