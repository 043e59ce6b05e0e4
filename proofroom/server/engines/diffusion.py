"""The diffusion engine: a diffusers inpainting pipeline, loaded from a folder or the HF cache.

torch, diffusers and transformers are imported when an engine is made, never at module import,
so the server starts fast and runs without them. One engine holds one pipeline on one device;
``inpaint`` calls are serialised (a pipeline's scheduler is stateful).
"""

from __future__ import annotations

import gc
import importlib
import importlib.metadata
import importlib.util
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import Engine, EngineError, InpaintParams, ProgressFn
from .latent_preview import SD_LATENT_RGB, StepTap, latents_to_rgb

logger = logging.getLogger(__name__)

#: ``owner/name`` or ``name`` as the Hugging Face Hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


def _require(name: str) -> Any:
    """Import an optional dependency of this engine, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise EngineError(
            f"the diffusion engine needs {name.split('.')[0]}: pip install 'proofroom[diffusion]'"
        ) from exc


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _short(exc: BaseException) -> str:
    """One line of an exception for a user: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def resolve_model(model: str) -> Path:
    """The local folder of pipeline ``model``: a path, or a Hub id already in the local cache.

    Nothing is downloaded (the worker must not fetch gigabytes on first use, and
    ``HF_HUB_OFFLINE`` machines cannot): fetch models beforehand with ``hf download ID``.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise EngineError(f"{model} is not a diffusers pipeline folder (no model_index.json)")
        return path
    if path.exists():
        raise EngineError(f"{model} is a file; give a diffusers pipeline folder or a Hub id")
    if not _HUB_ID.match(model) or model.count("/") > 1:
        raise EngineError(f"model {model!r}: no such folder, and not a Hugging Face model id")
    hub = _require("huggingface_hub")
    index = hub.try_to_load_from_cache(model, "model_index.json")
    if not isinstance(index, str):
        raise EngineError(
            f"model {model!r} is not a local folder and not in the Hugging Face cache; "
            f"download it first (hf download {model}) or give its folder"
        )
    return Path(index).parent


class DiffusionEngine(Engine):
    """Inpaint with a diffusers ``AutoPipelineForInpainting`` (Stable Diffusion family)."""

    name: ClassVar[str] = "diffusion"
    params: ClassVar[frozenset[str]] = frozenset(
        {"prompt", "negative_prompt", "seed", "steps", "strength", "guidance"}
    )
    bucket: int | None = 512

    @classmethod
    def configured_models(cls, settings: Any = None) -> tuple[str, ...]:
        """The models ``--model`` names (comma-separated), the default first."""
        raw = getattr(settings, "model", None) or ""
        return tuple(m.strip() for m in raw.split(",") if m.strip())

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        # find_spec only: importing torch to ask would cost seconds at every listing.
        missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed"
        if settings is not None and not cls.configured_models(settings):
            return "no model configured (--model)"
        return None

    def __init__(
        self,
        model: str | None = None,
        settings: Any = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        compile: bool | str = False,
        preview_every: float = 0.25,
    ) -> None:
        """Load ``model`` (a folder or a cached Hub id) onto ``device`` (default: cuda if any).

        ``dtype`` defaults to float16 on CUDA and float32 elsewhere; a name ("fp16", "bf16",
        "float32") or a torch dtype. ``compile`` runs the denoiser through ``torch.compile``
        (True, or a compile mode such as "max-autotune"); the first run then takes a while.
        ``preview_every`` is the least time in seconds between two previews (0: every step).
        """
        if model is None:
            configured = self.configured_models(settings)
            if not configured:
                raise EngineError("the diffusion engine needs --model (a path or a cached id)")
            model = configured[0]
        self.torch = torch = _require("torch")
        diffusers = _require("diffusers")
        self.model = model
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            kind = torch.device(self.device).type
        except RuntimeError:
            raise EngineError(f"unknown device {self.device!r}; use cuda, cuda:N or cpu") from None
        if kind == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"no CUDA device for {self.device!r}: torch sees no GPU here")
        self._cuda = kind == "cuda"
        self.dtype = self._dtype(dtype)
        self.preview_every = preview_every
        folder = resolve_model(model)
        self.pipe = self._load(diffusers, folder)
        self.scale = int(getattr(self.pipe, "vae_scale_factor", 8))
        sample = self.pipe.unet.config.sample_size
        self.bucket = int(sample) * self.scale if isinstance(sample, int) else 512
        self.compiled = bool(compile)
        if compile:
            mode = compile if isinstance(compile, str) else None
            self.pipe.unet.compile(mode=mode)
        self._factors = torch.tensor(SD_LATENT_RGB, dtype=torch.float32, device=self.device)
        self._lock = threading.Lock()
        self._tap = StepTap(self.pipe.scheduler)
        logger.info("diffusion engine ready: %s", self.describe())

    def _dtype(self, dtype: Any) -> Any:
        torch = self.torch
        if dtype is None:
            return torch.float16 if self._cuda else torch.float32
        if isinstance(dtype, str):
            try:
                return getattr(torch, _DTYPES[dtype.lower()])
            except KeyError:
                raise EngineError(
                    f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}"
                ) from None
        return dtype

    def _load(self, diffusers: Any, folder: Path) -> Any:
        torch = self.torch
        extra: dict[str, Any] = {}
        try:
            index = (folder / "model_index.json").read_text()
            if '"safety_checker"' in index:
                # Reviewers judge the images; the checker only blacks them out (and costs 1 GB).
                extra = {"safety_checker": None, "requires_safety_checker": False}
            pipe = diffusers.AutoPipelineForInpainting.from_pretrained(
                folder, dtype=self.dtype, local_files_only=True, **extra
            )
        except Exception as exc:
            # Anything from a half-downloaded cache to a foreign config: say what and where.
            logger.debug("loading %s failed", self.model, exc_info=True)
            raise EngineError(
                f"cannot load {self.model} as an inpaint pipeline: {_short(exc)}"
            ) from exc
        if getattr(pipe, "unet", None) is None:
            raise EngineError(
                f"{self.model} ({type(pipe).__name__}) is not supported: the engine runs "
                "UNet pipelines (Stable Diffusion 1.x, 2.x, XL)"
            )
        moved = False
        try:
            pipe.to(self.device)
            if pipe.unet.dtype != self.dtype:  # a diffusers that ignored ``dtype=``
                pipe.to(self.device, self.dtype)
            moved = True
        except torch.cuda.OutOfMemoryError:
            pass  # raised below, once the traceback no longer holds the half-moved weights
        except (RuntimeError, AssertionError) as exc:
            raise EngineError(f"cannot use device {self.device!r}: {_short(exc)}") from exc
        if not moved:
            del pipe
            self._free()
            raise EngineError(f"{self.device} ran out of memory loading {self.model}")
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval()
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _free(self) -> None:
        gc.collect()
        if self._cuda:
            self.torch.cuda.empty_cache()

    def describe(self) -> dict[str, Any]:
        unet = self.pipe.unet
        processors = getattr(unet, "attn_processors", {})
        return {
            "engine": self.name,
            "model": self.model,
            "pipeline": type(self.pipe).__name__,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "scheduler": type(self.pipe.scheduler).__name__,
            "attention": sorted({type(p).__name__ for p in processors.values()}),
            "compiled": self.compiled,
            "bucket": self.bucket,
            "diffusers": _version("diffusers"),
            "torch": _version("torch"),
            "transformers": _version("transformers"),
        }

    def _check(self, image: np.ndarray, mask: np.ndarray, params: InpaintParams) -> None:
        height, width = mask.shape[:2]
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise EngineError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
        if mask.shape != image.shape[:2]:
            raise EngineError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
        if height % self.scale or width % self.scale:
            raise EngineError(
                f"image sides must be multiples of {self.scale}, not {width}x{height}"
            )
        if params.steps < 1 or not 0.0 < params.strength <= 1.0:
            raise EngineError("steps must be at least 1 and strength in (0, 1]")
        if int(params.steps * params.strength) < 1:
            raise EngineError(
                f"strength {params.strength} of {params.steps} steps leaves no step to run"
            )

    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        params: InpaintParams,
        progress: ProgressFn,
    ) -> np.ndarray:
        """Run the pipeline on one crop; ``progress`` gets a cheap preview from the latents."""
        self._check(image, mask, params)
        from PIL import Image

        torch = self.torch
        height, width = mask.shape
        last_preview = -float("inf")

        def on_step_end(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal last_preview
            total = int(pipe.num_timesteps)
            preview = None
            now = time.monotonic()
            if now - last_preview >= self.preview_every:
                preview = self._preview(tensors["latents"])
                last_preview = now
            progress(i + 1, total, preview)
            return tensors

        # Noise comes from a CPU generator: a seed gives the same image on any device.
        generator = torch.Generator("cpu").manual_seed(params.seed)
        with self._lock:
            self._tap.inputs = None
            out = None
            try:
                out = self.pipe(
                    prompt=params.prompt,
                    negative_prompt=params.negative_prompt or None,
                    image=Image.fromarray(image),
                    mask_image=Image.fromarray(mask.astype(np.uint8) * 255),
                    height=height,
                    width=width,
                    num_inference_steps=params.steps,
                    strength=params.strength,
                    guidance_scale=params.guidance,
                    generator=generator,
                    output_type="pt",
                    callback_on_step_end=on_step_end,
                )
            except torch.cuda.OutOfMemoryError:
                # Raised below, outside this block: the error's traceback holds the run's
                # frames and their tensors, which must be gone before the cache is emptied.
                pass
            finally:
                self._tap.inputs = None
            if out is None:
                self._free()
                raise EngineError(
                    f"the {self.device} ran out of memory on a {width}x{height} crop; "
                    "try again when other jobs finish, or use a smaller bucket"
                )
            result = out.images[0].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0)
            array: np.ndarray = result.cpu().numpy()
        return array

    def _preview(self, latents: Any) -> np.ndarray | None:
        """The predicted image, one pixel per latent cell (1/8 of the crop); None if unknown.

        The whole frame, as the interface asks: compositing cuts out the mask's box and places
        it in the job's preview (a 64x64 latent costs no more than a crop of it).
        """
        if latents.ndim != 4 or latents.shape[1] != len(SD_LATENT_RGB):
            return None
        x0 = self._tap.x0(self.pipe.scheduler, latents)
        return latents_to_rgb(x0, self._factors)

    def warmup(self, steps: int = 2) -> float:
        """Run one small job at the bucket size (the first run loads kernels, compiles); seconds."""
        side = self.bucket or 512
        image = np.zeros((side, side, 3), np.uint8)
        mask = np.zeros((side, side), bool)
        mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = True
        start = time.perf_counter()
        self.inpaint(image, mask, InpaintParams(steps=steps), lambda *_: None)
        return time.perf_counter() - start
