"""The engine interface: inpaint one crop, report progress, stop when cancelled."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from ...shared.errors import ProofroomError

#: ``progress(step, total, preview)``: ``preview`` is an RGB uint8 image of the crop as the
#: engine currently predicts it (or None). It raises JobCancelled to stop the engine.
ProgressFn = Callable[[int, int, "np.ndarray | None"], None]


class JobCancelled(Exception):
    """Raised through an engine (from the progress callback) when its job was cancelled."""


class EngineError(ProofroomError):
    """An engine that cannot be loaded or cannot run this job (the message says why)."""

    status, code = 422, "engine_error"


@dataclass(frozen=True)
class InpaintParams:
    """What the user asked for; recorded with the layer so it can be reproduced."""

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    strength: float = 1.0
    guidance: float = 7.5
    #: Target colour of a recolour: ``#rrggbb`` as the request resolved it (None: none asked).
    color: str | None = None
    #: The engine's model asked for (None: the engine's default).
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FixResult:
    """The outcome of one fix on the parent image."""

    #: RGBA uint8, exactly ``box``'s size; alpha 0 wherever the fix may not change a pixel.
    patch: np.ndarray
    #: [x, y, w, h] of the patch in the parent image.
    box: tuple[int, int, int, int]
    #: The crops the engine saw, [x, y, w, h] each, in parent coordinates.
    crops: list[tuple[int, int, int, int]]
    #: Engine-specific provenance to store with the layer (sizes, bucket, timings...).
    details: dict[str, Any]


#: The request parameters an engine may use (its :attr:`Engine.params` is a subset).
PARAMETERS = frozenset(
    {"prompt", "negative_prompt", "seed", "steps", "strength", "guidance", "color"}
)


def check_crop(image: np.ndarray, mask: np.ndarray) -> None:
    """EngineError unless ``image`` is HxWx3 uint8 and ``mask`` is its HxW size."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise EngineError(f"expected an HxWx3 uint8 image, not {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise EngineError(f"the mask {mask.shape} does not match the image {image.shape}")


class Engine(ABC):
    """An edit engine: changes the masked part of a picture. Used from one thread at a time.

    The class attributes are what ``GET /api/engines`` lists; :meth:`availability` says
    whether the engine can run on this server, without importing anything heavy.
    """

    #: The job kind the engine serves ("edit"; "upscale" and "animate" have their own bases).
    kind: ClassVar[str] = "edit"
    #: Registry name ("fill", "recolor", "diffusion", "gemini", "openai", "classical").
    name: ClassVar[str]
    #: Models it can run, the default first; empty when it has none to choose from.
    models: ClassVar[tuple[str, ...]] = ()
    #: Which request parameters it uses (from :data:`PARAMETERS`); the rest it ignores.
    params: ClassVar[frozenset[str]] = frozenset()
    #: Calls a remote service: runs beside the local worker, not on it.
    hosted: ClassVar[bool] = False
    #: Side of the square the engine wants crops resized to; None keeps native resolution.
    bucket: int | None = None
    #: Whether the compositing matches the output's colour and grain to a ring of unmasked
    #: pixels (for engines that paint new content); False for engines that keep the masked
    #: pixels' own texture (a recolour) or match them themselves (the hosted engines).
    match_context: ClassVar[bool] = True

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        """None when the engine can run on this server, else a short reason for users."""
        return None

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Provenance: model, device, library versions, dtype... (JSON-compatible)."""

    @abstractmethod
    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        params: InpaintParams,
        progress: ProgressFn,
    ) -> np.ndarray:
        """Fill ``mask`` (HxW bool) of ``image`` (HxWx3 uint8 RGB); return HxWx3 uint8 RGB.

        Pixels outside the mask in the returned image do not matter: compositing keeps the
        parent's. Call ``progress`` after every step; let JobCancelled propagate.
        """
