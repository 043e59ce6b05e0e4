"""The import rules of DESIGN.md section 1, checked by parsing every module."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "proofroom"

# Inside server/, a package may import only from packages to its left.
SERVER_LAYERS = ["store", "rooms", "review", "web", "app"]


def _imports(path: Path) -> list[str]:
    """Absolute dotted names of everything a module imports."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.append(target)
            names += [f"{target}.{alias.name}" for alias in node.names]
    return names


def _modules(sub: str) -> list[Path]:
    return sorted((ROOT / sub).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("shared"), ids=lambda p: p.name)
def test_shared_imports_only_the_standard_library(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        assert name.startswith("proofroom.shared") or top in sys.stdlib_module_names, (
            f"{path.name} imports {name}"
        )


@pytest.mark.parametrize("path", _modules("server"), ids=lambda p: str(p.relative_to(ROOT)))
def test_server_never_imports_client(path: Path) -> None:
    assert not any(n.startswith("proofroom.client") for n in _imports(path))


@pytest.mark.parametrize("path", _modules("client"), ids=lambda p: p.name)
def test_client_never_imports_server(path: Path) -> None:
    assert not any(n.startswith("proofroom.server") for n in _imports(path))


@pytest.mark.parametrize("path", _modules("server"), ids=lambda p: str(p.relative_to(ROOT)))
def test_server_layers_import_one_way(path: Path) -> None:
    parts = path.relative_to(ROOT / "server").with_suffix("").parts
    own = parts[0]
    if own not in SERVER_LAYERS:
        return  # cross-cutting leaf modules (settings, identity, metrics, auth, images)
    rank = SERVER_LAYERS.index(own)
    for name in _imports(path):
        if not name.startswith("proofroom.server."):
            continue
        target = name.split(".")[2]
        if target in SERVER_LAYERS:
            assert SERVER_LAYERS.index(target) <= rank, f"{path} imports {name}"


def test_torch_and_diffusers_stay_out_of_the_server_import() -> None:
    import subprocess

    # They load only when a diffusion engine is made, so the server starts fast without them.
    code = (
        "import sys, proofroom.server.app, proofroom.cli;"
        "print(sorted(m for m in ('torch','diffusers','transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
