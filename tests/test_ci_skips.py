"""Under ``CI`` a skip for a missing dependency fails; elsewhere it stays a skip.

Runs pytest on the probe tests in tests/probes/ (which no ordinary run collects), once with
``CI`` set and once without, and reads each test's outcome from the JUnit XML report.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from . import requires

ROOT = Path(__file__).resolve().parent.parent
PROBES = ["tests/probes/skips.py", "tests/probes/skips_module.py"]


def _outcomes(tmp_path: Path, ci: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != requires.CI_ENV}
    if ci is not None:
        env[requires.CI_ENV] = ci
    report = tmp_path / f"report-{ci}.xml"
    subprocess.run(
        [
            *(sys.executable, "-m", "pytest", *PROBES, "-p", "no:cacheprovider", "-q"),
            "--continue-on-collection-errors",
        ],
        cwd=ROOT,
        env={**env, "PYTEST_ADDOPTS": f"--junitxml={report}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        name = case.get("name") or case.get("classname", "")
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[name] = kinds[0] if kinds else "passed"
    return outcomes


@pytest.mark.parametrize("ci", ["true"])
def test_under_ci_only_not_applicable_skips_stay_skips(tmp_path: Path, ci: str) -> None:
    outcomes = _outcomes(tmp_path, ci)
    assert outcomes.pop("test_not_applicable") == "skipped"
    # A strict xfail that fails is reported as skipped (expected), not turned into a failure.
    assert outcomes.pop("test_xfail") == "skipped"
    assert outcomes.pop("test_passes") == "passed"
    # The module that skips as a whole at import: a collection error.
    assert outcomes.pop("tests.probes.skips_module") == "error"
    assert outcomes == {
        "test_missing": "failure",
        "test_missing_module": "failure",
        "test_bare_skip": "failure",
        # A skipif marker skips in the setup phase, so its failure is a setup error.
        "test_skipif": "error",
        "test_importorskip": "failure",
    }


@pytest.mark.parametrize("ci", [None, "0"])
def test_without_ci_missing_dependencies_skip(tmp_path: Path, ci: str | None) -> None:
    outcomes = _outcomes(tmp_path, ci)
    assert outcomes.pop("test_passes") == "passed"
    assert set(outcomes.values()) == {"skipped"}
    assert "tests.probes.skips_module" in outcomes
