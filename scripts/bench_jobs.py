"""Job overhead: request -> layer visible at a second client, against the engine alone.

    .venv/bin/python scripts/bench_jobs.py [--engine fill|recolor|classical|diffusion]
        [--model DIR] [--runs 15] [--size 1024] [--region 96]

The request names its engine (``--engine``, which is also the server's default) and sends
only the parameters that engine uses.
Starts a real server in-process on a free port (SQLite and blobs in a temp dir), creates a
session from a real photograph, and for each run asks for a fix over HTTP while a second
client watches the document. Side by side, in the same process, it times the engine on the
same crop (``engine.inpaint``) and the whole compositing path (``run_fix``). Reports medians.
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
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proofroom.client import ApiClient, SessionClient
from proofroom.client.api import join
from proofroom.server.app import bind_socket, create_app, uvicorn_config
from proofroom.server.engines import InpaintParams
from proofroom.server.services import Services
from proofroom.server.settings import Settings


def photo(size: int) -> np.ndarray:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(img)


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn

    tmp = tempfile.mkdtemp(prefix="bench-jobs-")
    settings = Settings(
        data=Path(tmp),
        admin_token="bench",
        engine=args.engine,
        model=args.model,
        updates_per_second=1000,
        updates_burst=10_000,
    )
    ready: asyncio.Future[Services] = asyncio.get_running_loop().create_future()
    server = uvicorn.Server(
        uvicorn_config(create_app(settings, on_ready=ready.set_result), settings)
    )
    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    services = await ready
    image = photo(args.size)
    x = y = args.size // 2 - args.region // 2
    region = [x, y, args.region, args.region]
    mask = np.zeros(image.shape[:2], dtype=bool)
    mask[y : y + args.region, x : x + args.region] = True
    try:
        async with ApiClient(url, "bench") as admin:
            created = await admin.create_session(png(image), title="bench")
        sid = created["id"]
        # A role link is a door: each role's bench participant joins it under a name.
        editor_token = (await join(created["links"]["editor"], "Bench editor")).token
        viewer_token = (await join(created["links"]["viewer"], "Bench viewer")).token
        to_running, to_layer, engine_alone, run_fix_alone = [], [], [], []
        async with (
            ApiClient(url, editor_token) as api,
            SessionClient(url, sid, editor_token) as editor,
            SessionClient(url, sid, viewer_token) as viewer,
        ):
            me = (await api.whoami())["user_id"]
            editor.add_pin("p", x=x, y=y, text="bench", author=me, region=region)
            await viewer.wait_for(lambda: "p" in viewer.pins)
            engine = services.engine
            uses = type(engine).params
            color = "#2e7d32" if "color" in uses else None
            body: dict[str, Any] = {"engine": engine.name, "seed": 1}
            if "prompt" in uses:
                body["prompt"] = "bench"
            if "steps" in uses:
                body["steps"] = args.steps
            if color:
                body["color"] = color
            params = InpaintParams(prompt="bench", seed=1, steps=args.steps, color=color)
            from proofroom.server.engines.compositing import run_fix

            crop: np.ndarray | None = None
            crop_mask: np.ndarray | None = None
            # Runs alternate job / engine alone / run_fix alone, so that the machine's noise
            # hits all three alike; the first round is a warm-up.
            for n in range(args.runs + 1):
                t0 = time.perf_counter()
                reply = await api.json("POST", f"/api/sessions/{sid}/pins/p/fix", json=body)
                [job_id] = reply["jobs"]
                running_at: list[float] = []

                def seen(
                    job_id: str = job_id, running_at: list[float] = running_at, n: int = n
                ) -> bool:
                    job = viewer.jobs.get(job_id)
                    status = job.get("status") if job is not None else None
                    if status in ("running", "done") and not running_at:
                        running_at.append(time.perf_counter())
                    return len(viewer.layers) == n + 1

                await viewer.wait_for(seen, timeout=600)
                t_layer = time.perf_counter()
                if crop is None:
                    layer = viewer.layers[0]
                    cx, cy, cw, ch = (
                        int(v) for v in layer["params"]["compositing"]["crops"][0]["box"]
                    )
                    crop = image[cy : cy + ch, cx : cx + cw]
                    crop_mask = mask[cy : cy + ch, cx : cx + cw]
                    if engine.bucket:
                        crop = np.asarray(Image.fromarray(crop).resize((engine.bucket,) * 2))
                        crop_mask = np.asarray(
                            Image.fromarray(crop_mask).resize((engine.bucket,) * 2)
                        ).astype(bool)
                assert crop_mask is not None
                t1 = time.perf_counter()
                engine.inpaint(crop, crop_mask, params, lambda *a: None)
                t2 = time.perf_counter()
                run_fix(image, mask, engine, params, lambda *a: None)
                t3 = time.perf_counter()
                if n == 0:
                    continue
                to_running.append(running_at[0] - t0)
                to_layer.append(t_layer - t0)
                engine_alone.append(t2 - t1)
                run_fix_alone.append(t3 - t2)
    finally:
        server.should_exit = True
        await task
    overheads = [job - eng for job, eng in zip(to_layer, engine_alone, strict=True)]
    over_fix = [job - fix for job, fix in zip(to_layer, run_fix_alone, strict=True)]
    return {
        "overhead_ms": median_ms(overheads),
        "overhead_over_run_fix_ms": median_ms(over_fix),
        "overhead_pct": 100
        * statistics.median(
            (job - eng) / eng for job, eng in zip(to_layer, engine_alone, strict=True)
        ),
        "engine": services.engine.describe(),
        "runs": args.runs,
        "request_to_running_ms": median_ms(to_running),
        "request_to_layer_ms": median_ms(to_layer),
        "engine_alone_ms": median_ms(engine_alone),
        "run_fix_alone_ms": median_ms(run_fix_alone),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engine", default="classical", choices=["fill", "recolor", "classical", "diffusion"]
    )
    parser.add_argument("--model")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--region", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    r = asyncio.run(run(args))
    print(f"engine: {r['engine']}")
    print(
        "| runs | request->running | request->layer | engine alone | run_fix alone "
        "| overhead vs engine | overhead % | overhead vs run_fix |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {r['runs']} | {r['request_to_running_ms']:.1f} ms | "
        f"{r['request_to_layer_ms']:.1f} ms | {r['engine_alone_ms']:.1f} ms | "
        f"{r['run_fix_alone_ms']:.1f} ms | {r['overhead_ms']:.1f} ms | "
        f"{r['overhead_pct']:.1f}% | {r['overhead_over_run_fix_ms']:.1f} ms |"
    )


if __name__ == "__main__":
    main()
