"""Image-to-video with diffusers: LTX-Video, Wan 2.x I2V, CogVideoX I2V, Stable Video Diffusion.

Models load like the inpaint models (diffusion.py's ``resolve_model``: a pipeline folder or a
Hub id already in the local cache, never a download) through the pipeline class their
``model_index.json`` names. Each family wants its own frame counts, sizes and rates, and the
engine rounds what was asked to what the model can make rather than failing or letting
diffusers fail halfway (diffusers' own checks raise, or silently truncate):

- LTX-Video: frames 8k+1, sides multiples of 32, 24 fps (up to 257 frames)
- Wan 2.x I2V: frames 4k+1, sides multiples of 16, 16 fps (up to 81 frames)
- CogVideoX I2V: frames 8k+1, sides multiples of 16, 8 fps (1.0 makes exactly 49 frames at
  720x480; 1.5 up to 81 at 16 fps)
- Stable Video Diffusion: any frame count up to the UNet's ``num_frames`` (14 or 25),
  sides multiples of 64, played at 7 fps

Every rounding is a warning in the job's details; the clip is drawn at the rounded size,
near the model's trained pixel count, then fitted (scale to cover, centre crop) to the
asked even size and written to both renditions at the model's own rate, so its motion
plays at the speed the model drew it. torch and diffusers are imported when an engine is
made, never at module import.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..base import EngineError, JobCancelled, ProgressFn
from ..diffusion import _DTYPES, _require, _short, _version, resolve_model
from ..kinds import AnimateEngine, ClipResult, ClipSpec
from .camera import check_spec, encode_clip
from .encode import cover, even_size

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """What one family of image-to-video pipelines needs."""

    name: str
    #: Frame counts are ``step * k + 1`` (1: any count).
    frame_step: int
    min_frames: int
    max_frames: int
    #: Sides are multiples of this.
    multiple: int
    fps: int
    #: Pixels per frame it was trained at; larger asks are drawn at this and scaled up.
    pixels: int
    #: Whether it takes a prompt.
    prompted: bool = True
    #: A fixed size (w, h) it can only make, if any.
    fixed_size: tuple[int, int] | None = None


FAMILIES = {
    "ltx": Family("LTX-Video", 8, 9, 257, 32, 24, 768 * 512),
    "wan": Family("Wan I2V", 4, 5, 81, 16, 16, 832 * 480),
    "cogvideox": Family("CogVideoX I2V", 8, 9, 81, 16, 16, 1360 * 768),
    "cogvideox-1.0": Family("CogVideoX 1.0 I2V", 48, 49, 49, 16, 8, 720 * 480, True, (720, 480)),
    "svd": Family("Stable Video Diffusion", 1, 2, 25, 64, 7, 1024 * 576, prompted=False),
}
#: model_index.json's ``_class_name`` -> family.
PIPELINES = {
    "LTXImageToVideoPipeline": "ltx",
    "LTXConditionPipeline": "ltx",
    "WanImageToVideoPipeline": "wan",
    "CogVideoXImageToVideoPipeline": "cogvideox",
    "StableVideoDiffusionPipeline": "svd",
}


def round_frames(family: Family, wanted: int) -> int:
    """The frame count closest to ``wanted`` that ``family`` can make."""
    k = max(0, round((wanted - 1) / family.frame_step))
    return min(family.max_frames, max(family.min_frames, k * family.frame_step + 1))


def round_size(family: Family, width: int, height: int) -> tuple[int, int]:
    """The size ``family`` draws for an asked ``width`` x ``height``: the same aspect, at
    most the family's trained pixel count, each side a multiple of its ``multiple``."""
    if family.fixed_size is not None:
        return family.fixed_size
    scale = min(1.0, math.sqrt(family.pixels / (width * height)))
    m = family.multiple
    return (
        max(m, round(width * scale / m) * m),
        max(m, round(height * scale / m) * m),
    )


def family_of(folder: Path, model: str) -> tuple[str, str]:
    """The (family, pipeline class) of the pipeline in ``folder``, or EngineError."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(f"{model}: model_index.json cannot be read ({_short(exc)})") from None
    cls = str(index.get("_class_name", ""))
    if cls not in PIPELINES:
        raise EngineError(
            f"{model} is a {cls or 'pipeline of no known class'}, not an image-to-video "
            f"pipeline this engine runs ({', '.join(sorted(PIPELINES))})"
        )
    family = PIPELINES[cls]
    if family == "cogvideox":
        config = folder / "transformer" / "config.json"
        try:
            version = json.loads(config.read_text()).get("patch_size_t")
        except (OSError, ValueError):
            version = None
        if version is None:  # 1.0 has no temporal patching, and one size
            family = "cogvideox-1.0"
    return family, cls


def plan(family: Family, spec: ClipSpec, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the model will be asked for, given ``spec``, with a warning per rounding."""
    width, height, rounded = even_size(spec.width, spec.height)
    warnings = [rounded] if rounded else []
    warnings.extend(extra)
    wanted = max(1, round(spec.seconds * family.fps))
    frames = round_frames(family, wanted)
    if frames != wanted:
        warnings.append(
            f"{spec.seconds:g} s at {family.name}'s {family.fps} fps is {wanted} frames; "
            f"it makes {_frame_rule(family)}, so {frames} ({frames / family.fps:.2f} s)"
        )
    if spec.fps != family.fps:
        warnings.append(
            f"{spec.fps} fps asked; {family.name} draws {family.fps} fps, kept as drawn"
        )
    draw_w, draw_h = round_size(family, width, height)
    if (draw_w, draw_h) != (width, height):
        warnings.append(
            f"{family.name} draws {draw_w}x{draw_h} (sides multiples of {family.multiple}, "
            f"about {family.pixels // 1000}k pixels); fitted to {width}x{height}"
        )
    if spec.prompt and not family.prompted:
        warnings.append(f"{family.name} takes no prompt; the prompt was not used")
    return {
        "width": width,
        "height": height,
        "draw": (draw_w, draw_h),
        "frames": frames,
        "fps": family.fps,
        "warnings": warnings,
    }


def _frame_rule(family: Family) -> str:
    if family.min_frames == family.max_frames:
        return f"exactly {family.min_frames} frames"
    if family.frame_step == 1:
        return f"{family.min_frames} to {family.max_frames} frames"
    return f"{family.frame_step}k+1 frames ({family.min_frames} to {family.max_frames})"


class DiffusersVideoEngine(AnimateEngine):
    """Image-to-video through a diffusers pipeline (a local folder or the HF cache)."""

    name: ClassVar[str] = "diffusers"
    params: ClassVar[frozenset[str]] = frozenset({"seconds", "fps", "prompt", "seed", "steps"})
    #: Denoising steps when the request names none.
    default_steps: ClassVar[int] = 25

    @classmethod
    def configured_models(cls, settings: Any = None) -> tuple[str, ...]:
        """The models ``--video-model`` names (comma-separated), the default first."""
        raw = getattr(settings, "video_model", None) or ""
        return tuple(m.strip() for m in raw.split(",") if m.strip())

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed"
        if settings is not None and not cls.configured_models(settings):
            return "no video model configured (--video-model)"
        return None

    def __init__(
        self,
        model: str | None = None,
        settings: Any = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        steps: int | None = None,
    ) -> None:
        if model is None:
            configured = self.configured_models(settings)
            if not configured:
                raise EngineError("the diffusers video engine needs a model (--video-model)")
            model = configured[0]
        super().__init__(model, settings)
        self.torch = torch = _require("torch")
        diffusers = _require("diffusers")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._cuda = torch.device(self.device).type == "cuda"
        if self._cuda and not torch.cuda.is_available():
            raise EngineError(f"no CUDA device for {self.device!r}: torch sees no GPU here")
        if dtype is None:
            dtype = torch.bfloat16 if self._cuda else torch.float32
        elif isinstance(dtype, str):
            if dtype.lower() not in _DTYPES:
                raise EngineError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
            dtype = getattr(torch, _DTYPES[dtype.lower()])
        self.dtype = dtype
        self.steps = steps or self.default_steps
        folder = resolve_model(model)
        family, self.pipeline_class = family_of(folder, model)
        self.family = FAMILIES[family]
        try:
            pipe = getattr(diffusers, self.pipeline_class).from_pretrained(
                folder, dtype=dtype, local_files_only=True
            )
            pipe.to(self.device)
        except Exception as exc:
            logger.debug("loading %s failed", model, exc_info=True)
            raise EngineError(
                f"cannot load {model} as a {self.family.name} pipeline: {_short(exc)}"
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self._lock = threading.Lock()
        if family == "svd":
            limit = int(getattr(pipe.unet.config, "num_frames", 25) or 25)
            self.family = Family(**{**self.family.__dict__, "max_frames": limit})
        logger.info("diffusers video engine ready: %s", self.describe())

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.model,
            "family": self.family.name,
            "pipeline": self.pipeline_class,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "steps": self.steps,
            "diffusers": _version("diffusers"),
            "torch": _version("torch"),
        }

    def animate(
        self, image: np.ndarray, spec: ClipSpec, out_dir: Path, progress: ProgressFn
    ) -> ClipResult:
        from PIL import Image

        check_spec(spec)
        extra = (
            ()
            if spec.motion == "push-in"
            else (f"motion {spec.motion!r} is the camera engine's; the model chooses its own",)
        )
        todo = plan(self.family, spec, extra)
        draw_w, draw_h = todo["draw"]
        still = Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(
            (draw_w, draw_h), Image.Resampling.LANCZOS
        )
        steps = self.steps

        def on_step(pipe: Any, i: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            progress(i + 1, steps, None)  # raises JobCancelled to stop
            return tensors

        args: dict[str, Any] = {
            "image": still,
            "width": draw_w,
            "height": draw_h,
            "num_frames": todo["frames"],
            "num_inference_steps": steps,
            "generator": self.torch.Generator(device="cpu").manual_seed(spec.seed),
            "output_type": "np",
            "callback_on_step_end": on_step,
        }
        if self.family.prompted:
            args["prompt"] = spec.prompt or ""
        if self.pipeline_class == "LTXImageToVideoPipeline":
            args["frame_rate"] = self.family.fps
        if self.pipeline_class == "StableVideoDiffusionPipeline":
            args["fps"] = self.family.fps
            args["decode_chunk_size"] = 8
        with self._lock:
            try:
                out = self.pipe(**args)
            except JobCancelled:
                raise
            except self.torch.cuda.OutOfMemoryError:
                self._free()
                raise EngineError(
                    f"{self.device} ran out of memory drawing {todo['frames']} frames at "
                    f"{draw_w}x{draw_h}; ask for a shorter or smaller clip"
                ) from None
            except Exception as exc:
                logger.warning("%s failed: %s", self.model, exc, exc_info=True)
                raise EngineError(f"{self.family.name} failed: {_short(exc)}") from None
        frames = _frames(out.frames)
        width, height = todo["width"], todo["height"]
        mp4, webm, poster, codecs = encode_clip(
            lambda i: cover(frames[i], width, height),
            len(frames),
            todo["fps"],
            width,
            height,
            out_dir,
            lambda s, t, p: None,
        )
        details: dict[str, Any] = {
            **self.describe(),
            "seed": spec.seed,
            "drawn": {"width": draw_w, "height": draw_h, "frames": len(frames)},
            "encoding": codecs,
        }
        if todo["warnings"]:
            details["warnings"] = todo["warnings"]
        return ClipResult(mp4, webm, poster, len(frames), todo["fps"], width, height, details)

    def _free(self) -> None:
        import gc

        gc.collect()
        if self._cuda:
            self.torch.cuda.empty_cache()


def _frames(batch: Any) -> list[np.ndarray]:
    """The first video of a pipeline's ``np`` output as HxWx3 uint8 frames."""
    video = np.asarray(batch[0] if isinstance(batch, (list, tuple)) else batch)
    if video.ndim == 5:  # (batch, frames, h, w, c)
        video = video[0]
    if video.ndim != 4 or video.shape[-1] != 3:
        raise EngineError(f"the pipeline returned frames of shape {video.shape}")
    if video.dtype != np.uint8:
        video = np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(f) for f in video]
