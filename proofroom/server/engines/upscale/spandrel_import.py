"""Importing spandrel on a host without torchvision (one small adapter).

``import spandrel`` imports every architecture it knows, and two of them (LaMa, an
inpainter, and RestoreFormer, a face restorer) import torchvision's transforms at module
level. On a CPU-only host torchvision cannot be installed usefully: PyPI's wheels link
CUDA libraries that a CPU torch does not ship, so their ops fail to load and their import
raises ("operator torchvision::nms does not exist"), which also breaks transformers and
diffusers, which import torchvision whenever it is installed. CPU hosts therefore install
spandrel without it (``pip install --no-deps spandrel einops``, as scripts/setup does).

Where torchvision is missing, the three names those two architectures import are
provided for the length of ``import spandrel`` only, each raising EngineError when
called, and taken out of ``sys.modules`` again, so nothing else ever sees a torchvision.
The super-resolution architectures never use them. Where torchvision is installed
(a CUDA host), spandrel imports it as usual and this module does nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any, NoReturn

from ..base import EngineError

_lock = threading.Lock()
_PLACEHOLDERS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def import_spandrel() -> ModuleType:
    """``import spandrel``; EngineError if it is not installed or cannot be imported."""
    with _lock:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        if importlib.util.find_spec("spandrel") is None:
            raise EngineError("spandrel is not installed (pip install 'spandrel>=0.4.2,<0.5')")
        placeholders = importlib.util.find_spec("torchvision") is None
        if placeholders:
            sys.modules.update(_placeholder_modules())
        try:
            return importlib.import_module("spandrel")
        except Exception as exc:  # a broken install: say what, never a traceback
            raise EngineError(f"spandrel cannot be imported: {type(exc).__name__}: {exc}") from exc
        finally:
            if placeholders:
                for name in _PLACEHOLDERS:
                    sys.modules.pop(name, None)


def _needs_torchvision(*args: Any, **kwargs: Any) -> NoReturn:
    raise EngineError("this architecture needs torchvision, which is not installed here")


class _InterpolationMode:
    """Stands in for the enum LaMa names at call time only."""

    BILINEAR = "bilinear"
    NEAREST = "nearest"


def _placeholder_modules() -> dict[str, ModuleType]:
    root = ModuleType("torchvision")
    transforms = ModuleType("torchvision.transforms")
    functional = ModuleType("torchvision.transforms.functional")
    functional.rotate = _needs_torchvision  # type: ignore[attr-defined]
    functional.normalize = _needs_torchvision  # type: ignore[attr-defined]
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    return {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }
