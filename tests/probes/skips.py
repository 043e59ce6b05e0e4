"""Probe tests for tests/test_ci_skips.py (run only there, by path: never collected alone)."""

from __future__ import annotations

import pytest

from .. import requires


def test_missing() -> None:
    requires.missing("the probe dependency is not installed")


def test_missing_module() -> None:
    requires.require_module("proofroom_no_such_module", "pip install nothing")


def test_not_applicable() -> None:
    requires.not_applicable("the probe machine has no such part")


def test_bare_skip() -> None:
    pytest.skip("a skip that did not say why it is fine")


@pytest.mark.skipif(True, reason="a skipif marker")
def test_skipif() -> None:
    pass


def test_importorskip() -> None:
    pytest.importorskip("proofroom_no_such_module")


@pytest.mark.xfail(reason="an expected failure", strict=True)
def test_xfail() -> None:
    raise AssertionError("expected")


def test_passes() -> None:
    pass
