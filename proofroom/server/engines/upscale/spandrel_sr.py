"""The spandrel engine: any super-resolution weights file an admin lists, detected by spandrel.

Real-ESRGAN (and its compact SRVGG), SwinIR, HAT, DAT, OmniSR, ...: spandrel reads the
architecture and its hyperparameters from the state dict, so one engine runs them all.
Which files it may load is the admin's choice (``PROOFROOM_UPSCALE_MODELS``: files, or
folders of them); safetensors only, since unpickling a ``.pth`` can run code, unless the
admin turns ``PROOFROOM_ALLOW_PICKLED_WEIGHTS`` on (spandrel then unpickles with its
restricted unpickler).

Running: tiled with context margins and feathered seams (tiles.py; the tile is halved on
CUDA out-of-memory and the picture run again), float16 only on CUDA and only where
spandrel says the architecture supports it, any NaN or infinity in a float16 tile retried
in float32 (and float32 kept from then on), the model's output resized to the exact size
asked for when its scale differs, its low frequencies matched to the source's (colour.py:
no colour shift), and alpha resampled from the source (models see RGB).

torch and spandrel are imported when an engine is made, never when the registry lists it.
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from ..base import EngineError, ProgressFn
from ..kinds import UpscaleEngine, UpscaleParams
from . import colour, tiles
from .colour import match_low_frequencies
from .resize import carry_alpha, check_request, interpolation
from .spandrel_import import import_spandrel

logger = logging.getLogger(__name__)

#: Weights files loaded without consent, and those that need ``allow_pickled_weights``.
SAFE_SUFFIXES = (".safetensors",)
PICKLED_SUFFIXES = (".pth", ".pt", ".ckpt")
#: The smallest tile the out-of-memory halving goes down to.
MIN_TILE = 64


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def pickled_allowed(settings: Any) -> bool:
    """Whether the admin allows pickled weights (``PROOFROOM_ALLOW_PICKLED_WEIGHTS=on``)."""
    return getattr(settings, "allow_pickled_weights", "off") == "on"


class SpandrelEngine(UpscaleEngine):
    """Super-resolution with a weights file, architecture detected by spandrel (CUDA or CPU)."""

    name: ClassVar[str] = "spandrel"
    params: ClassVar[frozenset[str]] = frozenset({"tile"})

    @classmethod
    def configured_models(cls, settings: Any = None) -> tuple[str, ...]:
        """The weights files the admin lists, folders expanded (sorted), the default first."""
        raw = getattr(settings, "upscale_models", "") or ""
        suffixes = SAFE_SUFFIXES + (PICKLED_SUFFIXES if pickled_allowed(settings) else ())
        models: list[str] = []
        for entry in (e.strip() for e in raw.split(",")):
            if not entry:
                continue
            path = Path(entry).expanduser()
            if path.is_dir():
                found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
                models += [str(p) for p in found if p.is_file()]
            else:
                models.append(entry)
        return tuple(dict.fromkeys(models))

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        # find_spec only: importing torch to ask would cost seconds at every listing.
        missing = [m for m in ("torch", "spandrel") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed"
        if settings is not None and not cls.configured_models(settings):
            return "no weights file configured (PROOFROOM_UPSCALE_MODELS)"
        return None

    def __init__(
        self, model: str | None = None, settings: Any = None, *, device: str | None = None
    ) -> None:
        """Load weights file ``model`` (default: the first configured) onto ``device``."""
        if model is None:
            configured = self.configured_models(settings)
            if not configured:
                raise EngineError(
                    "the spandrel engine needs a weights file (PROOFROOM_UPSCALE_MODELS)"
                )
            model = configured[0]
        super().__init__(model, settings)
        self.path = path = Path(model).expanduser()
        suffix = path.suffix.lower()
        if suffix in PICKLED_SUFFIXES and not pickled_allowed(settings):
            raise EngineError(
                f"{path.name} is a pickled {suffix} file, and unpickling can run code: convert "
                "it to .safetensors, or have an admin allow pickled weights "
                "(PROOFROOM_ALLOW_PICKLED_WEIGHTS=on)"
            )
        if suffix not in SAFE_SUFFIXES + PICKLED_SUFFIXES:
            raise EngineError(
                f"{path.name}: not a weights file spandrel reads "
                f"({', '.join(SAFE_SUFFIXES + PICKLED_SUFFIXES)})"
            )
        if not path.is_file():
            raise EngineError(f"no weights file at {model}")
        try:
            self.torch = torch = importlib.import_module("torch")
        except ImportError:
            raise EngineError("the spandrel engine needs torch: pip install torch") from None
        spandrel = import_spandrel()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            kind = torch.device(self.device).type
        except RuntimeError:
            raise EngineError(f"unknown device {self.device!r}; use cuda, cuda:N or cpu") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"no CUDA device for {self.device!r}: torch sees no GPU here")
        self._cuda = kind == "cuda"
        try:
            descriptor = spandrel.ModelLoader(device=self.device).load_from_file(path)
        except Exception as exc:  # detection, a truncated file, a foreign format: say which
            logger.debug("loading %s failed", path, exc_info=True)
            why = _short(exc)
            if isinstance(exc, spandrel.UnsupportedModelError):
                why = f"{why} (its tensors match none of spandrel's architectures)"
            raise EngineError(f"{path.name} is not a model spandrel supports: {why}") from exc
        if not isinstance(descriptor, spandrel.ImageModelDescriptor):
            raise EngineError(
                f"{path.name} is a {descriptor.architecture.name} model that needs a mask "
                f"({descriptor.purpose}), not an upscaler"
            )
        if descriptor.input_channels not in (1, 3) or descriptor.output_channels not in (1, 3):
            raise EngineError(
                f"{path.name} maps {descriptor.input_channels} channels to "
                f"{descriptor.output_channels}; the engine runs RGB or grey models"
            )
        self.descriptor = descriptor
        self.scale = int(descriptor.scale)
        # float16 only where spandrel says the architecture holds up in it, and only on CUDA
        # (CPU float16 convolutions are slow or missing).
        self.half = self._cuda and bool(descriptor.supports_half)
        self.dtype = torch.float16 if self.half else torch.float32
        descriptor.to(self.dtype).eval()
        self._internal_tiling = descriptor.tiling == spandrel.ModelTiling.INTERNAL
        self._lock = threading.Lock()
        #: What the latest upscale did (tiles, tile side, dtype, retries): stored with it.
        self.last_details: dict[str, Any] = {}
        self._scratch: np.ndarray | None = None
        self._retries = 0
        logger.info("spandrel engine ready: %s", self.describe())

    def describe(self) -> dict[str, Any]:
        d = self.descriptor
        return {
            "engine": self.name,
            "model": str(self.path),
            "architecture": d.architecture.name,
            "architecture_id": str(d.architecture.id),
            "purpose": d.purpose,
            "scale": self.scale,
            "channels": [d.input_channels, d.output_channels],
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "supports_half": bool(d.supports_half),
            "tiling": d.tiling.name.lower(),
            "tile_margin": tiles.MARGIN,
            "tile_feather": tiles.FEATHER,
            "spandrel": _version("spandrel"),
            "torch": _version("torch"),
        }

    def upscale(self, image: np.ndarray, params: UpscaleParams, progress: ProgressFn) -> np.ndarray:
        check_request(image, params)
        if params.tile < MIN_TILE:
            raise EngineError(f"tile must be at least {MIN_TILE} pixels, not {params.tile}")
        source = np.ascontiguousarray(image[..., :3])
        height, width = source.shape[:2]
        tile = max(height, width) if self._internal_tiling else params.tile
        with self._lock:
            self._retries = 0
            work = source.astype(np.float32) / np.float32(255.0)
            while True:
                grown = self._run_tiled(work, tile, progress)
                if grown is not None:
                    break
                if tile // 2 < MIN_TILE:
                    raise EngineError(
                        f"the {self.device} ran out of memory even on {tile}-px tiles; "
                        "try again when other jobs finish"
                    )
                logger.warning("out of memory on %d-px tiles; halving", tile)
                tile //= 2
        out_w, out_h = width * self.scale, height * self.scale
        if (out_w, out_h) != (params.width, params.height):
            how = interpolation((out_w, out_h), (params.width, params.height))
            grown = np.stack(
                [cv2.resize(p, (params.width, params.height), interpolation=how) for p in grown]
            )
        rgb = match_low_frequencies(grown, source, scale=255.0)
        self.last_details = {
            "model_scale": self.scale,
            "resized_from": [out_w, out_h]
            if (out_w, out_h) != (params.width, params.height)
            else None,
            "tile": tile,
            "tiles": len(tiles.grid(width, height, tile)),
            "dtype": str(self.dtype).removeprefix("torch."),
            "float32_retries": self._retries,
            "colour": f"low frequencies matched to the source (sigma {colour.SIGMA} px)",
        }
        return carry_alpha(rgb, image)

    def _run_tiled(self, work: np.ndarray, tile: int, progress: ProgressFn) -> np.ndarray | None:
        """The model over ``work`` in ``tile``-px tiles; None if CUDA ran out of memory."""
        torch = self.torch
        out = None
        try:
            out = tiles.run_tiled(
                work,
                self._run,
                self.scale,
                tile,
                on_tile=lambda done, total: progress(done, total, None),
                canvas=self._canvas,
            )
        except torch.cuda.OutOfMemoryError:
            # Freed below, outside this block: the traceback holds the tile's tensors.
            pass
        if out is None:
            gc.collect()
            if self._cuda:
                torch.cuda.empty_cache()
        return out

    def _canvas(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The float32 array the tiles are blended into, kept between jobs of the same size."""
        if self._scratch is None or self._scratch.shape != shape:
            self._scratch = None  # the old one goes before the new one is touched
            self._scratch = np.empty(shape, np.float32)
        return self._scratch

    def _run(self, window: np.ndarray) -> np.ndarray:
        """One window (hxwx3 float32, 0-1) through the model: 3x(h*s)x(w*s) float32, 0-1."""
        torch = self.torch
        with torch.inference_mode():
            return self._infer(window)

    def _infer(self, window: np.ndarray) -> np.ndarray:
        torch = self.torch
        d = self.descriptor
        tensor = torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1).unsqueeze(0)
        tensor = tensor.to(self.device)
        if d.input_channels == 1:
            luma = torch.tensor([0.299, 0.587, 0.114], device=self.device).view(1, 3, 1, 1)
            tensor = (tensor * luma).sum(dim=1, keepdim=True)
        result = d(tensor.to(self.dtype))
        if not self._finite(result):
            if not self.half:
                raise EngineError(f"{self.path.name} produced NaN or infinite pixels in float32")
            # float16 overflowed in this architecture on this picture: float32 from here on.
            logger.warning("%s gave NaN in float16; running in float32", self.path.name)
            self.half, self.dtype = False, torch.float32
            d.to(torch.float32)
            self._retries += 1
            result = d(tensor.to(torch.float32))
            if not self._finite(result):
                raise EngineError(f"{self.path.name} produced NaN or infinite pixels")
        if result.shape[1] == 1:
            result = result.repeat(1, 3, 1, 1)
        array: np.ndarray = result[0].float().cpu().numpy()
        return array

    def _finite(self, result: Any) -> bool:
        """No NaN or infinity anywhere: one pass (a NaN or inf survives a float32 sum)."""
        return bool(self.torch.isfinite(result.sum(dtype=self.torch.float32)))
