"""A tiny inpainting pipeline with random weights, built once per test session.

Use it from a test module (or conftest) with ``from .tiny_pipeline import tiny_pipeline_dir``;
tests that take the fixture are skipped where torch or diffusers is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from . import requires

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_tiny_pipeline.py"


def load_builder() -> ModuleType:
    """``scripts/make_tiny_pipeline.py`` as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_tiny_pipeline", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a saved tiny SD inpaint pipeline (256 px, ~8 MB), loadable offline."""
    requires.require_module("torch", "the diffusion extra (torch) is not installed")
    requires.require_module("diffusers", "the diffusion extra (diffusers) is not installed")
    import torch

    # A tiny model runs fastest on one thread, and extra threads spin against the server
    # processes other tests start on small CI machines (2 threads were 15x slower here).
    torch.set_num_threads(1)
    out: Path = load_builder().build_tiny_pipeline(tmp_path_factory.mktemp("tiny-inpaint"))
    return out
