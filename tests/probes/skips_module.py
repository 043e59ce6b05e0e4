"""A probe module that skips as a whole (see tests/test_ci_skips.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("proofroom_no_such_module")


def test_never_collected() -> None:
    pass
