"""Cheap previews of a diffusion run: the predicted image, straight from the latents.

A linear map from the 4 latent channels of Stable Diffusion's VAE to RGB stands in for the VAE
decoder: a 4x3 matmul on a 64x64 latent instead of a decode that costs more than a UNet step.
The functions take tensors and call only their methods, so this module never imports torch.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

#: Latent channel -> RGB weights for the SD 1.x/2.x VAE (a least-squares fit of decoded images
#: on latents, as used by ComfyUI and A1111 for their "approx" previews). Applied to the scaled
#: latents the UNet sees; the result is in [-1, 1].
SD_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)


def predicted_x0(scheduler: Any, model_output: Any, timestep: Any, sample: Any) -> Any:
    """The scheduler's estimate of the clean latents from one step's inputs, or None.

    For schedulers that report ``pred_original_sample`` the caller uses that; this covers the
    variance-preserving ones that don't (PNDM, DPM-Solver, UniPC...), whose ``sample`` is
    ``sqrt(a) * x0 + sqrt(1 - a) * noise``. Sigma-scaled schedulers (Euler, Heun...) report
    their prediction, and get None here.
    """
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None or float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0:
        return None
    alpha = float(alphas[int(timestep)])
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "epsilon":
        return (sample - (1.0 - alpha) ** 0.5 * model_output) / alpha**0.5
    if kind == "v_prediction":
        return alpha**0.5 * sample - (1.0 - alpha) ** 0.5 * model_output
    if kind == "sample":
        return model_output
    return None


def latents_to_rgb(latents: Any, factors: Any) -> np.ndarray:
    """RGB uint8 (h x w x 3, one pixel per latent cell) of the first latent in the batch.

    ``factors`` is ``SD_LATENT_RGB`` as a (4, 3) float32 tensor on the latents' device.
    """
    rgb = latents[0].float().permute(1, 2, 0) @ factors
    image: np.ndarray = rgb.add(1.0).mul(127.5).clamp(0, 255).byte().cpu().numpy()
    return image


class StepTap:
    """Wraps a scheduler's ``step`` to keep its last inputs and x0 prediction; changes nothing.

    Holds the scheduler weakly, and nothing holds the engine, so dropping an engine frees its
    GPU memory at once (no reference cycle waiting for the garbage collector).
    """

    def __init__(self, scheduler: Any) -> None:
        self.inputs: tuple[Any, Any, Any, Any] | None = None
        self._scheduler = weakref.ref(scheduler)
        self._step = type(scheduler).step
        scheduler.step = self

    def __call__(
        self, model_output: Any, timestep: Any, sample: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return_dict = kwargs.pop("return_dict", True)
        out = self._step(
            self._scheduler(), model_output, timestep, sample, *args, return_dict=True, **kwargs
        )
        self.inputs = (model_output, timestep, sample, getattr(out, "pred_original_sample", None))
        return out if return_dict else out.to_tuple()

    def x0(self, scheduler: Any, latents: Any) -> Any:
        """The last step's prediction of the clean latents, else ``latents`` themselves."""
        if self.inputs is not None:
            model_output, timestep, sample, predicted = self.inputs
            if predicted is None:
                predicted = predicted_x0(scheduler, model_output, timestep, sample)
            if predicted is not None and predicted.shape == latents.shape:
                return predicted
        return latents
