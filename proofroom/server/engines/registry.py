"""Engine registry: (kind, name) to lazily imported classes, what each offers, and the default.

Every engine module is imported only when its class is asked for, and an engine's own heavy
imports (torch, diffusers, vendor SDKs) wait until an instance is made, so listing the
engines (``GET /api/engines``) costs nothing. A module that is not installed yet shows as an
engine that is not available, with the reason, rather than as an error.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from typing import Any

from .base import Engine, EngineError
from .kinds import AnimateEngine, UpscaleEngine

logger = logging.getLogger(__name__)

#: Job kinds and the base class of their engines: :class:`Engine` is the ``edit`` one, the
#: others are in :mod:`.kinds`.
KINDS: dict[str, type] = {"edit": Engine, "upscale": UpscaleEngine, "animate": AnimateEngine}

#: kind -> name -> "module:Class". ``fill`` is the default edit engine; ``classical`` (the
#: old default, OpenCV's Navier-Stokes and friends) stays for existing settings and scripts.
ENGINES: dict[str, dict[str, str]] = {
    "edit": {
        "fill": "proofroom.server.engines.fill:FillEngine",
        "recolor": "proofroom.server.engines.recolor:RecolorEngine",
        "classical": "proofroom.server.engines.classical:ClassicalEngine",
        "diffusion": "proofroom.server.engines.diffusion:DiffusionEngine",
        "gemini": "proofroom.server.engines.hosted.gemini:GeminiEngine",
        "openai": "proofroom.server.engines.hosted.openai_images:OpenAIEngine",
    },
    "upscale": {
        "resample": "proofroom.server.engines.upscale.resample:ResampleEngine",
        "spandrel": "proofroom.server.engines.upscale.spandrel_sr:SpandrelEngine",
        "refine": "proofroom.server.engines.upscale.refine:RefineEngine",
    },
    "animate": {
        "camera": "proofroom.server.engines.animate.camera:CameraEngine",
        "diffusers": "proofroom.server.engines.animate.i2v:DiffusersVideoEngine",
        "veo": "proofroom.server.engines.animate.veo:VeoEngine",
    },
}
#: The engine a request of each kind gets when neither it nor ``--engine`` names one.
DEFAULTS = {"edit": "fill", "upscale": "resample", "animate": "camera"}
#: What ``--engine`` accepts: ``auto`` or any registered edit engine.
ENGINE_SETTINGS = ("auto", *ENGINES["edit"])


@dataclass(frozen=True)
class EngineInfo:
    """One registered engine as users see it (``GET /api/engines``)."""

    kind: str
    name: str
    #: None when it can run here, else why not.
    unavailable: str | None
    models: tuple[str, ...]
    params: frozenset[str]
    hosted: bool

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "available": self.available,
            "reason": self.unavailable,
            "models": list(self.models),
            "default_model": self.models[0] if self.models else None,
            "params": sorted(self.params),
            "hosted": self.hosted,
        }


def engine_class(kind: str, name: str) -> type[Any]:
    """The class registered as ``name`` for ``kind``; EngineError if it cannot be imported."""
    try:
        target = ENGINES[kind][name]
    except KeyError:
        known = sorted(ENGINES.get(kind, {}))
        raise EngineError(f"unknown {kind} engine {name!r}; choose one of {known}") from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or module_name
        raise EngineError(f"not installed ({missing} is missing)") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, KINDS[kind])):
        raise EngineError(f"not installed ({target} is not an {kind} engine)")
    return cls


def models_of(cls: type[Any], settings: Any = None) -> tuple[str, ...]:
    """The models an engine offers on this server (the diffusion engine's come from settings)."""
    configured = getattr(cls, "configured_models", None)
    if callable(configured):
        return tuple(configured(settings))
    return tuple(cls.models)


def describe_engines(settings: Any = None, kind: str | None = None) -> list[EngineInfo]:
    """Every registered engine (of ``kind``), available or not, in registry order."""
    infos = []
    for engine_kind, names in ENGINES.items():
        if kind is not None and engine_kind != kind:
            continue
        for name in names:
            try:
                cls = engine_class(engine_kind, name)
            except EngineError as exc:
                infos.append(EngineInfo(engine_kind, name, exc.message, (), frozenset(), False))
                continue
            except Exception as exc:  # a broken engine module must not break the listing
                logger.warning("the %s engine cannot be imported: %s", name, exc)
                broken = f"cannot be loaded ({type(exc).__name__})"
                infos.append(EngineInfo(engine_kind, name, broken, (), frozenset(), False))
                continue
            reason: str | None
            try:
                reason = cls.availability(settings)
            except Exception as exc:  # an engine's check must not break the listing
                logger.warning("availability of the %s engine failed: %s", name, exc)
                reason = f"cannot tell ({type(exc).__name__})"
            infos.append(
                EngineInfo(
                    engine_kind,
                    name,
                    reason,
                    models_of(cls, settings),
                    frozenset(cls.params),
                    bool(cls.hosted),
                )
            )
    return infos


def load_engine(name: str, model: str | None = None, settings: Any = None) -> Engine:
    """Make edit engine ``name`` (with ``model``, or its default)."""
    engine: Engine = load_kind_engine("edit", name, model, settings)
    return engine


def load_upscale_engine(name: str, model: str | None = None, settings: Any = None) -> UpscaleEngine:
    """Make upscale engine ``name`` (with ``model``, or its default)."""
    engine: UpscaleEngine = load_kind_engine("upscale", name, model, settings)
    return engine


def load_animate_engine(name: str, model: str | None = None, settings: Any = None) -> AnimateEngine:
    """Make animate engine ``name`` (with ``model``, or its default)."""
    engine: AnimateEngine = load_kind_engine("animate", name, model, settings)
    return engine


def load_kind_engine(kind: str, name: str, model: str | None, settings: Any) -> Any:
    """Make the ``kind`` engine ``name``; EngineError (saying why) if it cannot run here."""
    try:
        cls = engine_class(kind, name)
    except EngineError as exc:
        if name not in ENGINES.get(kind, {}):
            raise
        raise EngineError(f"the {name} engine is {exc.message}") from None
    reason = cls.availability(settings)
    if reason is not None:
        raise EngineError(f"the {name} engine is not available on this server: {reason}")
    return cls(model, settings)


def choose_engine(setting: str, model: str | None, settings: Any = None) -> tuple[Engine, str]:
    """The default engine for ``--engine`` (auto or an engine's name), and why it was picked.

    ``auto``: the diffusion engine when a model is configured and loads, else ``fill``
    (or ``classical`` where ``fill`` cannot run).
    """
    if setting in ENGINES["edit"] and setting != "diffusion":
        return load_engine(setting, None, settings), f"asked for the {setting} engine"
    if setting == "diffusion":
        if not model:
            raise EngineError("the diffusion engine needs --model (a path or a cached id)")
        return load_engine("diffusion", first_model(model), settings), (
            f"asked for diffusion with {first_model(model)}"
        )
    if setting != "auto":
        raise EngineError(
            f"unknown engine setting {setting!r}; choose one of {', '.join(ENGINE_SETTINGS)}"
        )
    if model:
        missing = [m for m in ("torch", "diffusers") if importlib.util.find_spec(m) is None]
        if missing:
            return _cpu_default(settings, f"{', '.join(missing)} not installed")
        try:
            return load_engine("diffusion", first_model(model), settings), (
                f"model {first_model(model)} loaded"
            )
        except EngineError as exc:
            logger.warning("falling back to the CPU engine: %s", exc)
            return _cpu_default(settings, f"model {model} unusable ({exc.message})")
    return _cpu_default(settings, "no model configured")


def _cpu_default(settings: Any, why: str) -> tuple[Engine, str]:
    try:
        return load_engine(DEFAULTS["edit"], None, settings), why
    except EngineError as exc:
        logger.warning("the %s engine cannot run here: %s", DEFAULTS["edit"], exc.message)
        return load_engine("classical", None, settings), f"{why}; {exc.message}"


def first_model(setting: str | None) -> str | None:
    """The first of ``--model``'s comma-separated models (the diffusion engine's default)."""
    models = split_models(setting)
    return models[0] if models else None


def split_models(setting: str | None) -> tuple[str, ...]:
    """``--model a,b`` as a tuple; empty for None or blank."""
    return tuple(m.strip() for m in (setting or "").split(",") if m.strip())


class EnginePool:
    """Engines made on first use and kept, one per (name, model): loading a model is slow.

    The default engine (made at start) is in the pool from the beginning. An engine is used
    by one thread at a time: local jobs run one at a time anyway, and hosted jobs, which run
    several at once, get an instance per worker thread (a vendor client is cheap to make).
    """

    def __init__(self, settings: Any, default: Engine, default_model: str | None) -> None:
        self.settings = settings
        self.default = default
        self._engines: dict[tuple[str, str | None, int], Engine] = {
            (default.name, default_model, 0): default
        }
        self._others: dict[tuple[str, str, str | None, int], Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str, model: str | None) -> Engine:
        """The engine for ``(name, model)``, made (in the calling thread) if it is new."""
        thread = threading.get_ident() if engine_class("edit", name).hosted else 0
        key = (name, model, thread)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = self._engines[key] = load_engine(name, model, self.settings)
            return engine

    def get_kind(self, kind: str, name: str, model: str | None) -> Any:
        """The ``kind`` engine for ``(name, model)`` (an UpscaleEngine, an AnimateEngine...),
        made on first use and kept like edit engines."""
        if kind == "edit":
            return self.get(name, model)
        thread = threading.get_ident() if engine_class(kind, name).hosted else 0
        with self._lock:
            engine = self._others.get((kind, name, model, thread))
            if engine is None:
                engine = load_kind_engine(kind, name, model, self.settings)
                self._others[(kind, name, model, thread)] = engine
            return engine
