"""Upscale as a job: request to revision visible, ``resample`` 1024 -> 4096 px (target <= 1.5 s).

Starts the real server on a free port (tests/helpers.py ``run_server``), uploads a 1024 px
photograph, and times POST /upscale {factor: 4} until a pycrdt client sees the revision.

    .venv/bin/python scripts/bench_revisions.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photo(side: int) -> bytes:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


async def main(runs: int, side: int, factor: int) -> None:
    from proofroom.client import ApiClient
    from tests.helpers import join_session, run_server

    png = photo(side)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        async with run_server(Path(tmp) / "data") as server:
            created = await server.admin.create_session(png, title="bench")
            joined = await join_session(server.url, created)
            sid = created["id"]
            async with (
                server.client(sid, joined.tokens["viewer"]) as viewer,
                ApiClient(server.url, joined.tokens["editor"]) as api,
            ):
                for _ in range(runs + 1):  # the first run warms the engine up
                    start = time.perf_counter()
                    reply = await api.json(
                        "POST", f"/api/sessions/{sid}/upscale", json={"factor": factor}
                    )
                    rid = f"r_{reply['job']}"
                    await viewer.wait_for(
                        lambda rid=rid: any(e["id"] == rid for e in viewer.revisions.to_py()),
                        timeout=120,
                    )
                    times.append(time.perf_counter() - start)
    measured = times[1:]
    print(
        f"resample {side} -> {side * factor} px, request to revision visible:"
        f" median {statistics.median(measured):.3f} s over {len(measured)} runs"
        f" (min {min(measured):.3f}, max {max(measured):.3f}; warm-up {times[0]:.3f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--factor", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.side, args.factor))
