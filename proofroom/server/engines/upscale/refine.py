"""The refine engine: the resampled picture, redrawn lightly by a diffusion model, tile by tile.

The picture is first resampled to the exact size (resize.py); then every tile goes
through the configured diffusers inpaint model (the diffusion edit engine's, ``--model``)
with the whole tile masked at a low strength (0.25 by default: a quarter of the schedule
is re-noised and denoised), which on a 9-channel inpaint UNet amounts to img2img: the
noised latents carry the picture, the prompt steers the new detail. Tiles overlap by
MARGIN pixels and cross-fade over 2 * FEATHER (tiles.py), each with its own seed
(``seed + index``) so no noise pattern repeats; the result's low frequencies are matched
back to the source (colour.py), so the pass adds detail, never a colour cast.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import numpy as np

from ..base import EngineError, InpaintParams, ProgressFn
from ..kinds import UpscaleEngine, UpscaleParams
from . import tiles
from .colour import match_low_frequencies
from .resize import carry_alpha, check_request, resample

#: Context around a tile and half-width of the cross-fade, in output pixels: wider than the
#: super-resolution ones, as two tiles' denoising differs more than two tiles of one CNN.
MARGIN = 32
FEATHER = 16
#: The schedule the strength is a fraction of (20 steps at 0.25: 5 denoising steps).
STEPS = 20
GUIDANCE = 7.5


class RefineEngine(UpscaleEngine):
    """Resample, then a low-denoise tiled diffusion pass with the prompt, colour-matched back."""

    name: ClassVar[str] = "refine"
    params: ClassVar[frozenset[str]] = frozenset({"prompt", "seed", "strength", "tile"})

    @classmethod
    def configured_models(cls, settings: Any = None) -> tuple[str, ...]:
        """The diffusion engine's models (``--model``), the default first."""
        from ..diffusion import DiffusionEngine

        return DiffusionEngine.configured_models(settings)

    @classmethod
    def availability(cls, settings: Any = None) -> str | None:
        missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
        if missing:
            return f"{' and '.join(missing)} not installed"
        if settings is not None and not cls.configured_models(settings):
            return "no diffusion model configured (--model)"
        return None

    def __init__(
        self, model: str | None = None, settings: Any = None, *, device: str | None = None
    ) -> None:
        from ..diffusion import DiffusionEngine

        super().__init__(model, settings)
        self.diffusion = DiffusionEngine(model, settings, device=device, preview_every=0.5)
        self.model = self.diffusion.model
        self.last_details: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {
            **self.diffusion.describe(),
            "engine": self.name,
            "method": "Lanczos resample, then a low-denoise tiled diffusion pass",
            "steps": STEPS,
            "guidance": GUIDANCE,
            "tile_margin": MARGIN,
            "tile_feather": FEATHER,
        }

    def upscale(self, image: np.ndarray, params: UpscaleParams, progress: ProgressFn) -> np.ndarray:
        check_request(image, params)
        if not 0.0 < params.strength <= 1.0 or int(STEPS * params.strength) < 1:
            raise EngineError(f"strength must be in [{1 / STEPS}, 1], not {params.strength}")
        if params.tile < 2 * MARGIN + 8:
            raise EngineError(f"tile must be at least {2 * MARGIN + 8} pixels, not {params.tile}")
        source = np.ascontiguousarray(image[..., :3])
        base = resample(source, params.width, params.height)
        count = len(tiles.grid(params.width, params.height, params.tile, MARGIN))
        denoise = int(STEPS * params.strength)
        index = 0

        def run(window: np.ndarray) -> np.ndarray:
            nonlocal index
            seed, first = params.seed + index, index * denoise
            index += 1

            def step(done: int, total: int, preview: np.ndarray | None) -> None:
                progress(first + done, count * denoise, preview)

            return self._refine(window, params, seed, step)

        out = tiles.run_tiled(base, run, 1, params.tile, margin=MARGIN, feather=FEATHER)
        self.last_details = {
            "tiles": count,
            "tile": params.tile,
            "steps": denoise,
            "strength": params.strength,
            "seeds": [params.seed, params.seed + count - 1],
            "colour": "low frequencies matched to the source",
        }
        return carry_alpha(match_low_frequencies(out, source), image)

    def _refine(
        self, window: np.ndarray, params: UpscaleParams, seed: int, progress: ProgressFn
    ) -> np.ndarray:
        """One window through the pipeline, whole-masked; 3xhxw float32 in levels."""
        h, w = window.shape[:2]
        scale = self.diffusion.scale
        # The pipeline takes sides that are multiples of the VAE's scale: mirror-pad, crop.
        ph, pw = -h % scale, -w % scale
        padded = np.pad(window, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else window
        mask = np.ones(padded.shape[:2], bool)
        inpaint = InpaintParams(
            prompt=params.prompt,
            seed=seed,
            steps=STEPS,
            strength=params.strength,
            guidance=GUIDANCE,
        )
        out = self.diffusion.inpaint(np.ascontiguousarray(padded), mask, inpaint, progress)
        planar: np.ndarray = out[:h, :w].transpose(2, 0, 1).astype(np.float32)
        return planar
