"""Proofroom's own work around a hosted model's call, for a 1024-pixel crop.

The hosted engines (Gemini, OpenAI) run through their real SDKs against the loopback
stand-in (tests/hosted_standin.py) answering at once with a picture drawn beforehand
(resized, shifted and tinted like a real model's). Timed with ``run_fix``, the real
compositing path, on scikit-image's astronaut at 2048x2048 with a 511-pixel round mask
(its crop is 1023x1023):

- ``local``: everything but the remote call, wall clock (and ``local_cpu``, the CPU time
  it took, which other work on a shared machine inflates less): framing and encoding the
  crop, decoding the answer, aligning it (ECC), taking out the cast and matching the grain
  on a ring, compositing's feathered alpha, paste and bit-for-bit check outside the mask.
  Target: <= 150 ms.
- ``remote``: the call itself (the SDK building and parsing JSON or multipart, base64, the
  loopback HTTP round trip, the stand-in reading the request).
- the engine's own steps (prepare, decode, align, match: cast and grain) and
  compositing's rest.

    .venv/bin/python scripts/bench_hosted.py            # 9 runs per engine, ~30 s
    .venv/bin/python scripts/bench_hosted.py --runs 3   # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proofroom.server.engines.base import InpaintParams
from proofroom.server.engines.compositing import run_fix
from tests.hosted_standin import Reply, Running, StandIn, render, truth_map
from tests.images import sized

SIDE = 2048
SETTINGS = SimpleNamespace(hosted_timeout=30.0, hosted_attempts=1)


def _mask() -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    mask: np.ndarray = (xx - 1024) ** 2 + (yy - 1000) ** 2 <= 255**2
    return mask


def _ignore(step: int, total: int, preview: Any) -> None:
    pass


def bench(name: str, engine: Any, standin: StandIn, runs: int) -> dict[str, float]:
    parent, mask = sized("astronaut", SIDE, SIDE), _mask()
    params = InpaintParams(prompt="a green patch", seed=1)
    # One drawn call to learn the frame, then the same answer canned for every timed run.
    standin.expect(Reply())
    run_fix(parent, mask, engine, params, _ignore)
    seen = standin.seen[-1]
    image = seen.images[0][..., :3]
    frame_mask = seen.images[1] > 127 if name == "gemini" else seen.images[1][..., 3] == 0
    size = tuple(engine.last_call()["alignment"]["answer"])
    canned = _png(render(image, frame_mask, size, Reply()))
    rows: dict[str, list[float]] = {}
    # CPU seconds of the process while the SDK call runs (the stand-in's work among them).
    remote_cpu: list[float] = []
    request = engine.request

    def timed(*args: Any) -> Any:
        started = time.process_time()
        try:
            return request(*args)
        finally:
            remote_cpu.append(time.process_time() - started)

    engine.request = timed
    for _ in range(runs):
        standin.expect(Reply(canned=canned))
        started, cpu = time.perf_counter(), time.process_time()
        result = run_fix(parent, mask, engine, params, _ignore)
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        seconds = engine.last_call()["seconds"]
        for key, value in seconds.items():
            rows.setdefault(key, []).append(value)
        rows.setdefault("total", []).append(total)
        rows.setdefault("local", []).append(total - seconds["remote"])
        rows.setdefault("local_cpu", []).append(cpu - remote_cpu[-1])
        rows.setdefault("compositing", []).append(total - sum(seconds.values()))
    crop = result.crops[0]
    call = engine.last_call()
    print(
        f"{name}: crop {crop[2]}x{crop[3]}, sent {call['frame']['sent']}, answer "
        f"{list(size)}, {runs} runs; warp within {_misalignment(call, mask, crop):.3f} px "
        "of the stand-in's"
    )
    return {key: statistics.median(values) for key, values in rows.items()}


def _misalignment(call: dict[str, Any], mask: np.ndarray, crop: tuple[int, ...]) -> float:
    """How far (crop pixels) the warp found puts the mask's corners from the true ones."""
    sx, sy = call["frame"]["scale"]
    to_frame = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    sent, answer = call["frame"]["sent"], call["alignment"]["answer"]
    truth = truth_map(tuple(sent), tuple(answer), Reply().shift) @ to_frame
    x, y, w, h = crop
    ys, xs = np.nonzero(mask[y : y + h, x : x + w])
    corners = np.array([[xs.min(), ys.min(), 1], [xs.max(), ys.max(), 1], [xs.max(), ys.min(), 1]])
    found = np.array(call["alignment"]["warp"])
    error = np.abs(corners @ truth.T - corners @ found.T).max()
    return float(error / min(truth[0, 0], truth[1, 1]))


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with Running(StandIn()) as standin:
        os.environ.update(
            GEMINI_API_KEY="bench-gemini-key",
            GOOGLE_GEMINI_BASE_URL=standin.url,
            OPENAI_API_KEY="bench-openai-key",
            OPENAI_BASE_URL=standin.url + "/v1",
        )
        os.environ.pop("GOOGLE_API_KEY", None)
        from proofroom.server.engines.hosted.gemini import GeminiEngine
        from proofroom.server.engines.hosted.openai_images import OpenAIEngine

        results = {
            "gemini": bench("gemini", GeminiEngine(None, SETTINGS), standin, args.runs),
            "openai": bench("openai", OpenAIEngine(None, SETTINGS), standin, args.runs),
        }
    keys = [
        "local_cpu",
        "local",
        "prepare",
        "decode",
        "align",
        "match",
        "compositing",
        "remote",
        "total",
    ]
    print(f"\nload average while it ran: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("(local_cpu: CPU time of Proofroom's own work; the rest are wall-clock times)\n")
    print("| median ms | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{1000 * row[k]:.0f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
