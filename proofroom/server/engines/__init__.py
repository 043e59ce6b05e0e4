"""Inpaint engines behind one small interface, and the compositing that keeps pixels safe.

Only ``diffusion.py`` imports torch or diffusers, and only when a diffusion engine is made.
"""

from .base import Engine, EngineError, FixResult, InpaintParams, JobCancelled, ProgressFn
from .registry import choose_engine, load_engine

__all__ = [
    "Engine",
    "EngineError",
    "FixResult",
    "InpaintParams",
    "JobCancelled",
    "ProgressFn",
    "choose_engine",
    "load_engine",
]
