"""Every registered edit engine that can run here keeps every unmasked pixel bit-identical:
random masks on real photographs, through the compositing every job goes through (run_fix,
as the job runner calls it).

Hosted engines are checked the same way against their vendor stand-in
(tests/test_engine_hosted.py): no vendor can be reached from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofroom.server.engines import InpaintParams, registry
from proofroom.server.engines.compositing import apply_patch, run_fix
from proofroom.server.settings import Settings

from .test_compositing import photo_and_mask

#: Engines this test leaves to another, and which one.
ELSEWHERE = {"gemini": "test_engine_hosted.py", "openai": "test_engine_hosted.py"}
#: Fewer examples for engines that take a second or more a call on these CPUs.
EXAMPLES = {"diffusion": 4, "fill": 25}
_engines: dict[str, Any] = {}


def test_every_local_engine_is_checked_here_or_elsewhere() -> None:
    names = set(registry.ENGINES["edit"])
    assert names - set(ELSEWHERE) == {"fill", "recolor", "classical", "diffusion"}
    for name in ELSEWHERE:
        assert registry.engine_class("edit", name).hosted


def engine_for(name: str, tiny_pipeline_dir: Path) -> Any:
    if name not in _engines:
        model = str(tiny_pipeline_dir) if name == "diffusion" else None
        config = Settings(model=model)
        reason = registry.engine_class("edit", name).availability(config)
        assert reason is None, f"the {name} engine cannot run here: {reason}"
        _engines[name] = registry.load_engine(name, model, config)
    return _engines[name]


@pytest.mark.parametrize("name", ["fill", "recolor", "classical", "diffusion"])
def test_no_unmasked_pixel_changes(name: str, tiny_pipeline_dir: Path) -> None:
    engine = engine_for(name, tiny_pipeline_dir)

    @settings(
        max_examples=EXAMPLES.get(name, 40),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=photo_and_mask(), seed=st.integers(0, 2**32 - 1))
    def check(case: tuple[np.ndarray, np.ndarray], seed: int) -> None:
        parent, mask = case
        params = InpaintParams(
            prompt="a clean surface", seed=seed, steps=2, color="#2e7d32", model=None
        )
        result = run_fix(parent, mask, engine, params, lambda *_: None)
        out = apply_patch(parent, result.patch, result.box)
        assert np.array_equal(out[~mask], parent[~mask])
        assert (result.patch[..., 3][~mask[_box(result.box)]] == 0).all()

    check()


def _box(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)
