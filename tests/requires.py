"""Skips for what is not installed here, which are failures where ``CI`` is set.

A developer without Node or Chromium still gets a green run of everything else; CI must
not: a browser test that skipped because Chromium was missing proves nothing. So every
skip for a missing dependency goes through :func:`missing`, and conftest's hook turns any
other skip into a failure under CI too, except those that say the test does not apply to
this machine at all (:func:`not_applicable`, e.g. "no GPU is expected here").
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

#: The variable CI systems set (GitHub Actions, GitLab, .ci/run).
CI_ENV = "CI"
#: How a skip that is fine under CI starts its reason.
NOT_APPLICABLE = "not applicable here: "


def strict() -> bool:
    """Whether skips for a missing dependency fail (``CI`` is set to anything but 0/false)."""
    return os.environ.get(CI_ENV, "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> NoReturn:
    """Skip because ``what`` is not installed; fail instead under CI."""
    __tracebackhide__ = True  # report the test's line, not this one
    if strict():
        pytest.fail(f"{what} (CI is set: a missing dependency is a failure)", pytrace=False)
    pytest.skip(what)


def require_module(name: str, what: str) -> ModuleType:
    """``import name``, or :func:`missing` with ``what`` (the way to install it)."""
    __tracebackhide__ = True  # report the test's line, not this one
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{what} ({exc})")


def not_applicable(reason: str) -> NoReturn:
    """Skip a test that has no meaning on this machine (never a failure, CI or not)."""
    __tracebackhide__ = True  # report the test's line, not this one
    pytest.skip(NOT_APPLICABLE + reason)


def skip_reason(longrepr: object) -> str:
    """The reason of a skipped report (pytest keeps it as ``(path, line, reason)``)."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
