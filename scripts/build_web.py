#!/usr/bin/env python3
"""Build the browser client: contract JSON from proofroom/shared, then the esbuild bundle.

Usage: scripts/build_web.py [--dev]   (run with the project's Python, e.g. .venv/bin/python)

Writes proofroom/client/web/dist/ (git-ignored), which the server serves under /static.
Installs the npm packages first (``npm ci``) when node_modules is missing. ``--dev``
skips minification, for readable stack traces.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "proofroom" / "client" / "web"
DIST = WEB / "dist"
ENTRIES = ["src/review.js", "src/producer.js", "src/styles.css"]
# Browsers of the last few years, tablets included (Safari 15 has every API used).
TARGETS = "chrome100,firefox100,safari15,edge100"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="no minification")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from proofroom.shared.export_json import contract

    npm = shutil.which("npm")
    if not (WEB / "node_modules" / ".bin" / "esbuild").exists():
        if npm is None:
            print(
                "build_web: npm is needed to install esbuild and Yjs (Node.js 18+)", file=sys.stderr
            )
            return 1
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True
        )
    DIST.mkdir(exist_ok=True)
    # The contract first: the bundle embeds it (src/contract.js imports it).
    (DIST / "contract.json").write_text(json.dumps(contract(), indent=1, sort_keys=True) + "\n")
    command = [
        str(WEB / "node_modules" / ".bin" / "esbuild"),
        *ENTRIES,
        "--bundle",
        "--format=esm",
        f"--target={TARGETS}",
        "--outdir=dist",
        "--entry-names=[name]",
        "--sourcemap",
        "--legal-comments=linked",
        "--log-level=warning",
    ]
    if not args.dev:
        command.append("--minify")
    subprocess.run(command, cwd=WEB, check=True)
    for name in ("review.js", "producer.js", "styles.css"):
        data = (DIST / name).read_bytes()
        size = len(gzip.compress(data, 9))
        print(f"  dist/{name:<12} {len(data) / 1024:7.1f} KiB  ({size / 1024:.1f} KiB gzipped)")
    print(f"built {DIST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
