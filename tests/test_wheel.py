"""The built wheel, installed the ordinary way, serves every page and asset.

The test builds a wheel from a copy of this source tree (``pip wheel``, the project's own
build backend), installs it with ``--no-deps`` into a fresh venv that sees this
environment's dependencies but not the source tree (the editable install's finder is not
run there), and starts that venv's ``proofroom serve`` from an empty working directory.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest

from . import requires
from .helpers import ADMIN_TOKEN, png_bytes
from .procs import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
#: The setuptools that build-system.requires asks for (pyproject.toml).
SETUPTOOLS_MAJOR = 77
PIP = (sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", "--no-cache-dir")
WEB = Path("proofroom/client/web")
#: What a source checkout holds that a build never reads (and that is large).
NOT_SOURCES = shutil.ignore_patterns(
    *(".git", ".venv", "node_modules", "__pycache__", "*.egg-info", "build", "*-data"),
    *(".*_cache", ".hypothesis", ".bench", ".whl", "screenshots"),
)


def _copy_sources(to: Path, *, bundle: bool) -> Path:
    """This tree as a build sees it; node_modules linked (not copied) for a rebuild."""
    shutil.copytree(ROOT, to, ignore=NOT_SOURCES, symlinks=True)
    if not bundle:
        shutil.rmtree(to / WEB / "dist", ignore_errors=True)
    if (ROOT / WEB / "node_modules").is_dir():
        (to / WEB / "node_modules").symlink_to(ROOT / WEB / "node_modules")
    return to


def _pip_wheel(
    src: Path, out: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # This environment's setuptools builds it when it is recent enough (offline); else pip
    # fetches one into an isolated build environment, as a user's pip would.
    major = int(importlib.metadata.version("setuptools").split(".")[0])
    offline = ["--no-build-isolation"] if major >= SETUPTOOLS_MAJOR else []
    return subprocess.run(
        [*PIP, "wheel", "--no-deps", *offline, "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("npm") is None and not (ROOT / WEB / "dist" / "review.js").exists():
        requires.missing("no browser bundle and no npm to build it (scripts/build_web.py)")
    tmp = tmp_path_factory.mktemp("wheel")
    built = _pip_wheel(_copy_sources(tmp / "src", bundle=True), tmp / "out")
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = (tmp / "out").glob("proofroom-*.whl")
    return path


def _fresh_venv(where: Path, wheel: Path) -> Path:
    """A venv with only the wheel installed, and this environment's packages behind it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Plain directory lines: Python adds them to sys.path without running the .pth files
    # inside, so this environment's editable finder (which maps to the tree) stays out.
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "proofroom-test-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    return where


def test_the_wheel_holds_the_templates_bundle_and_contract(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("base.html", "review.html", "producer.html"):
        assert f"proofroom/server/web/templates/{name}" in names
    for name in ("review.js", "producer.js", "styles.css", "contract.json"):
        assert f"proofroom/client/web/dist/{name}" in names
    # The client's sources and npm packages are not part of an installed server.
    assert not [n for n in names if "/web/src/" in n or "node_modules" in n]


def test_an_installed_wheel_serves_every_page_and_asset(wheel: Path, tmp_path: Path) -> None:
    venv = _fresh_venv(tmp_path / "venv", wheel)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    located = subprocess.run(
        [venv / "bin" / "python", "-c", "import proofroom; print(proofroom.__file__)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    ).stdout.strip()
    assert Path(located).is_relative_to(venv), located  # the wheel's copy, not the tree's

    command = (str(venv / "bin" / "proofroom"),)
    with ServerProcess(
        tmp_path / "data", command=command, cwd=cwd, env={"PYTHONPATH": None}
    ) as srv:
        srv.start()
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            created = http.post(
                "/api/sessions",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                files={"image": ("image.png", png_bytes())},
                data={"title": "From the wheel"},
            )
            assert created.status_code == 201, created.text
            pages = [f"/?token={ADMIN_TOKEN}", f"/s/{created.json()['id']}"]
            assets = {
                "/static/review.js",
                "/static/producer.js",
                "/static/styles.css",
                "/static/contract.json",
            }
            for page in pages:
                reply = http.get(page)
                assert reply.status_code == 200, (page, reply.text)
                assert "not built" not in reply.text
                assets |= set(re.findall(r'(?:src|href)="(/static/[^"]+)"', reply.text))
            assert len(assets) > 4  # the pages' own versioned links were found
            for asset in sorted(assets):
                reply = http.get(asset)
                assert reply.status_code == 200, (asset, reply.text[:200])
                assert reply.content, asset
            assert http.get("/static/contract.json").json()  # JSON, not an error page
    assert "Traceback" not in srv.output()


def test_a_wheel_without_a_bundle_or_npm_is_refused_clearly(tmp_path: Path) -> None:
    src = _copy_sources(tmp_path / "src", bundle=False)
    # No npm on PATH: nothing can build the bundle.
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(tmp_path / "none")}
    built = _pip_wheel(src, tmp_path / "out", env=env)
    assert built.returncode != 0
    output = built.stdout + built.stderr
    assert "the browser bundle (proofroom/client/web/dist/) is not built" in output
    assert "scripts/build_web.py" in output
    assert not list(tmp_path.glob("out/*.whl"))
