"""Engine registry: names to lazily imported classes, and the ``auto`` choice."""

from __future__ import annotations

import importlib
import importlib.util
import logging

from .base import Engine, EngineError

logger = logging.getLogger(__name__)

ENGINES = {
    "classical": "proofroom.server.engines.classical:ClassicalEngine",
    "diffusion": "proofroom.server.engines.diffusion:DiffusionEngine",
}


def load_engine(name: str, model: str | None = None) -> Engine:
    """Instantiate engine ``name`` (the diffusion engine needs ``model``)."""
    try:
        target = ENGINES[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; choose one of {sorted(ENGINES)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    engine: Engine = cls(model) if name == "diffusion" else cls()
    return engine


def choose_engine(setting: str, model: str | None) -> tuple[Engine, str]:
    """The engine for ``--engine`` (auto, classical or diffusion), and why it was picked."""
    if setting == "classical":
        return load_engine("classical"), "asked for the classical engine"
    if setting == "diffusion":
        if not model:
            raise EngineError("the diffusion engine needs --model (a path or a cached id)")
        return load_engine("diffusion", model), f"asked for diffusion with {model}"
    if setting != "auto":
        raise EngineError(f"unknown engine setting {setting!r}")
    if not model:
        return load_engine("classical"), "no model configured"
    missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
    if missing:
        return load_engine("classical"), f"{', '.join(missing)} not installed"
    try:
        return load_engine("diffusion", model), f"model {model} loaded"
    except EngineError as exc:
        logger.warning("falling back to the classical engine: %s", exc)
        return load_engine("classical"), f"model {model} unusable ({exc.message})"
