"""The classical engine: OpenCV's inpainting, on the CPU, with no model and no torch.

The methods and why the default is what it is: BENCHMARKS.md ("Classical inpainting").
It was the default engine before ``fill``; it stays so that existing settings
(``--engine classical``), documents and scripts keep working. Its "models" are the methods.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from .base import Engine, EngineError, InpaintParams, ProgressFn, check_crop

#: Method name -> (library function, flag name); ``xphoto`` needs opencv-contrib.
METHODS = {
    "telea": ("inpaint", "INPAINT_TELEA"),
    "ns": ("inpaint", "INPAINT_NS"),
    "fsr_fast": ("xphoto", "INPAINT_FSR_FAST"),
    "fsr_best": ("xphoto", "INPAINT_FSR_BEST"),
}
#: Chosen by fill quality and speed on photographs (scripts/bench_engines.py): Navier-Stokes
#: fills small masks about 0.6 dB better than TELEA, large ones as well, in the same time;
#: FSR gains up to 3 dB more on 32-pixel masks but costs 100-3,000 times as long.
DEFAULT_METHOD = "ns"
#: Neighbourhood radius (pixels) of the TELEA and Navier-Stokes methods (OpenCV's example).
RADIUS = 3
#: Block size of xphoto's FSR methods.
FSR_BLOCK = 16


class ClassicalEngine(Engine):
    """Fills from the surrounding pixels; ignores the prompt."""

    name: ClassVar[str] = "classical"
    #: The OpenCV methods, the default first.
    models: ClassVar[tuple[str, ...]] = (
        DEFAULT_METHOD,
        *sorted(m for m in METHODS if m != DEFAULT_METHOD),
    )
    #: The seed varies only the film grain the compositing adds to match the surround.
    params: ClassVar[frozenset[str]] = frozenset({"seed"})
    bucket = None

    def __init__(self, model: str | None = None, settings: Any = None) -> None:
        """``model``: the OpenCV method (default Navier-Stokes)."""
        self.method = model or DEFAULT_METHOD
        if self.method not in METHODS:
            raise EngineError(
                f"unknown classical method {self.method!r}; choose one of {sorted(METHODS)}"
            )
        library, flag = METHODS[self.method]
        if library == "xphoto" and not hasattr(cv2, "xphoto"):
            raise EngineError(
                f"the {self.method} method needs cv2.xphoto (opencv-contrib-python-headless)"
            )
        self._flag: int = getattr(cv2.xphoto if library == "xphoto" else cv2, flag)
        self._xphoto = library == "xphoto"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.method,
            "method": self.method,
            "opencv": cv2.__version__,
            "device": "cpu",
            "prompt_used": False,
        }
        if not self._xphoto:
            info["radius"] = RADIUS
        return info

    def inpaint(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        params: InpaintParams,
        progress: ProgressFn,
    ) -> np.ndarray:
        """Fill ``mask`` of ``image`` in one step (OpenCV offers no intermediate results)."""
        check_crop(image, mask)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if self._xphoto:
            out = self._fsr(bgr, mask)
        else:
            out = cv2.inpaint(bgr, mask.astype(np.uint8), RADIUS, self._flag)
        rgb = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
        progress(1, 1, rgb)
        return rgb

    def _fsr(self, bgr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # FSR works in 16-pixel blocks and leaves holes in a partial block at the right or
        # bottom edge unfilled (a flat colour): mirror the image out to whole blocks.
        h, w = mask.shape
        bottom, right = -h % FSR_BLOCK, -w % FSR_BLOCK
        padded = cv2.copyMakeBorder(bgr, 0, bottom, 0, right, cv2.BORDER_REFLECT)
        # xphoto wants the opposite of cv2.inpaint: non-zero marks the *valid* pixels.
        valid = cv2.copyMakeBorder(
            np.where(mask, 0, 255).astype(np.uint8), 0, bottom, 0, right, cv2.BORDER_REFLECT
        )
        out = np.empty_like(padded)
        cv2.xphoto.inpaint(padded, valid, out, self._flag)
        return out[:h, :w]
