"""The PEP 517 build backend: setuptools, and a wheel never ships without its browser bundle.

The pages and their assets (``proofroom/client/web/dist/``: the esbuild bundle and the
contract JSON) are built by ``scripts/build_web.py`` with Node.js and npm, and never
committed. A wheel built without them installs fine and then serves a page that says
"not built" and 404s for every asset: the ordinary ``pip install`` would get no product.
So before a wheel is built the bundle must be there and current: it is (re)built when npm
is available, and otherwise a missing bundle stops the build with a message that says what
to run. An sdist carries the bundle when it is built (and the sources and this script
always), so a wheel built from it needs no Node. Editable installs
(``pip install -e .``, as scripts/setup does before it builds the bundle) are unchanged.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (every other hook, unchanged)

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "proofroom" / "client" / "web"
DIST = WEB / "dist"
BUILD_WEB = ROOT / "scripts" / "build_web.py"
#: What the server serves from the bundle (see proofroom/server/web/pages.py).
BUNDLE = ("review.js", "producer.js", "styles.css", "contract.json")
#: What the bundle is made from: the client's sources, its npm lock, the shared contract.
SOURCES = (WEB / "src", WEB / "package.json", WEB / "package-lock.json", ROOT / "proofroom/shared")


class BundleMissing(RuntimeError):
    """The browser bundle is not built, and it cannot be built here."""


def _newest(paths: tuple[Path, ...]) -> float:
    times = [0.0]
    for path in paths:
        files = path.rglob("*") if path.is_dir() else [path]
        times += [f.stat().st_mtime for f in files if f.is_file() and "__pycache__" not in f.parts]
    return max(times)


def bundle_state() -> str:
    """``current``, ``stale`` (a source is newer than the bundle) or ``missing``."""
    try:
        built = min((DIST / name).stat().st_mtime for name in BUNDLE)
    except OSError:
        return "missing"
    return "stale" if _newest(SOURCES) > built else "current"


def ensure_bundle(*, required: bool) -> None:
    """Build the bundle if it is missing or stale and npm is here; else fail if required."""
    state = bundle_state()
    if state == "current":
        return
    if shutil.which("npm") is not None and BUILD_WEB.exists():
        print(f"proofroom build: the browser bundle is {state}; running {BUILD_WEB.name}")
        done = subprocess.run([sys.executable, str(BUILD_WEB)], cwd=ROOT, check=False)
        if done.returncode == 0 and bundle_state() != "missing":
            return
        raise BundleMissing(f"scripts/build_web.py failed (exit {done.returncode})")
    if state == "stale":
        print(
            "proofroom build: warning: the browser bundle is older than its sources and npm "
            "is not here to rebuild it; the wheel ships the bundle as it is",
            file=sys.stderr,
        )
        return
    if required:
        raise BundleMissing(
            "the browser bundle (proofroom/client/web/dist/) is not built, and a wheel without "
            "it serves no pages: run `python scripts/build_web.py` first (needs Node.js 18+ "
            "and npm), or build the wheel from an sdist that includes it"
        )
    print(
        "proofroom build: warning: the sdist has no browser bundle; building a wheel from it "
        "will need Node.js and npm",
        file=sys.stderr,
    )


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    ensure_bundle(required=True)
    return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    ensure_bundle(required=False)
    return build_meta.build_sdist(sdist_directory, config_settings)
