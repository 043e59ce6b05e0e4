from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from . import requires
from .helpers import ReviewSession, RunningServer, run_server
from .tiny_pipeline import tiny_pipeline_dir  # noqa: F401  (a session fixture)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A real server with default settings on a free port, its data in tmp_path."""
    async with run_server(tmp_path / "data") as running:
        yield running


@pytest.fixture
async def session(server: RunningServer) -> ReviewSession:
    """A new review session with a person per role (each joined that role's link)."""
    return await server.new_session()


# -- under CI, a skip for something not installed is a failure (see tests/requires.py) ----


def _fail_skips_under_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not requires.strict():
        return
    reason = requires.skip_reason(report.longrepr)
    if not reason.startswith(requires.NOT_APPLICABLE):
        report.outcome = "failed"
        report.longrepr = f"skipped, and CI is set (a missing dependency is a failure): {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    _fail_skips_under_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    report = yield
    _fail_skips_under_ci(report)
    return report
