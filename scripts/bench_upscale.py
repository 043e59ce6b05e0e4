"""The upscale engines: resample's speed and faithfulness, spandrel's tiling overhead.

1. ``resample`` 1024 -> 4096 px (scikit-image's astronaut at 1024 px), the engine alone
   (``ResampleEngine.upscale``, the call a job makes): median seconds; the same for RGBA.
2. Faithfulness: the mean absolute difference (levels) between an area-downsample of the
   result and its source, on each photograph at 2x, 4x and 1.5x, for plain Lanczos and for
   the engine's Lanczos + unsharp mask (resize.py explains why the sharpening helps).
3. ``spandrel`` tiling overhead: a tiny random Real-ESRGAN Compact x4 (16 features, 4
   convs; built from its config, loaded back from safetensors) on the CPU over a 1024-px
   picture, tiled at the default 512-px tile (4 tiles with margins and feathered seams)
   against one untiled model call on the same picture; medians, interleaved runs.

    .venv/bin/python scripts/bench_upscale.py              # everything, ~1 minute
    .venv/bin/python scripts/bench_upscale.py --runs 3 --only resample
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proofroom.server.engines.kinds import UpscaleParams
from proofroom.server.engines.upscale import resize
from proofroom.server.engines.upscale.resample import ResampleEngine
from tests.images import PHOTOS, photo, sized


def _quiet(*_: Any) -> None:
    pass


def _median(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def bench_resample(runs: int) -> None:
    engine = ResampleEngine()
    source = sized("astronaut", 1024, 1024)
    params = UpscaleParams(4.0, 4096, 4096)
    engine.upscale(source, params, _quiet)  # first call: page-faults the output buffers
    median, times = _median(lambda: engine.upscale(source, params, _quiet), runs)
    print(f"resample 1024 -> 4096 RGB : median {median:.3f} s  runs {[round(t, 3) for t in times]}")
    rgba = np.dstack([source, np.full(source.shape[:2], 200, np.uint8)])
    median, times = _median(lambda: engine.upscale(rgba, params, _quiet), runs)
    print(f"resample 1024 -> 4096 RGBA: median {median:.3f} s  runs {[round(t, 3) for t in times]}")


def bench_faithfulness() -> None:
    print("area-downsample of the result vs the source, mean |difference| in levels:")
    print(f"  {'photo':10} {'factor':>6} {'lanczos':>8} {'engine':>8}")
    for name in PHOTOS:
        source = photo(name)
        h, w = source.shape[:2]
        for factor in (2.0, 4.0, 1.5):
            size = (round(w * factor), round(h * factor))
            plain = resize.resize(source, *size)
            ours = resize.resample(source, *size)
            errors = [
                np.abs(
                    cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA).astype(float) - source
                ).mean()
                for out in (plain, ours)
            ]
            print(f"  {name:10} {factor:6.1f} {errors[0]:8.3f} {errors[1]:8.3f}")


def bench_spandrel(runs: int, threads: int) -> None:
    import torch

    # One thread by default: two OpenMP threads on two cores shared with other work spin
    # against each other and against it, and the figures scatter by a factor of three.
    torch.set_num_threads(threads)
    from safetensors.torch import save_file

    from proofroom.server.engines.upscale import tiles
    from proofroom.server.engines.upscale.spandrel_import import import_spandrel
    from proofroom.server.engines.upscale.spandrel_sr import SpandrelEngine

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiny-compact-x4.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        engine = SpandrelEngine(str(path), device="cpu")
    work = sized("astronaut", 1024, 1024).astype(np.float32) / 255
    tile = UpscaleParams(4, 4096, 4096).tile
    print(f"spandrel tiny Compact x4, 1024 px in, torch threads {torch.get_num_threads()}:")

    def untiled() -> object:
        return engine._run(work)

    def tiled() -> object:
        return tiles.run_tiled(work, engine._run, engine.scale, tile, canvas=engine._canvas)

    untiled()
    tiled()
    times: dict[str, list[float]] = {"untiled": [], "tiled": []}
    cpu: dict[str, list[float]] = {"untiled": [], "tiled": []}
    for _ in range(runs):  # interleaved, so load from elsewhere hits both alike
        for name, fn in (("untiled", untiled), ("tiled", tiled)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    one, many = statistics.median(times["untiled"]), statistics.median(times["tiled"])
    one_cpu, many_cpu = statistics.median(cpu["untiled"]), statistics.median(cpu["tiled"])
    count = len(tiles.grid(1024, 1024, tile))
    print(
        f"  one untiled call : median {one:.3f} s  runs {[round(t, 3) for t in times['untiled']]}"
    )
    print(
        f"  {count} tiles of {tile}  : median {many:.3f} s  "
        f"runs {[round(t, 3) for t in times['tiled']]}"
    )
    print(f"  tiling overhead  : {100 * (many / one - 1):+.1f}% wall (medians)")
    # The fastest run of each is the one least disturbed by other work on shared cores.
    fast_one, fast_many = min(times["untiled"]), min(times["tiled"])
    print(
        f"  fastest runs     : {fast_one:.3f} s vs {fast_many:.3f} s, overhead "
        f"{100 * (fast_many / fast_one - 1):+.1f}%"
    )
    # CPU seconds (all threads): steadier than wall time on cores shared with other work.
    print(
        f"  CPU seconds      : untiled {one_cpu:.3f}, tiled {many_cpu:.3f}, "
        f"overhead {100 * (many_cpu / one_cpu - 1):+.1f}%"
    )
    source = sized("astronaut", 1024, 1024)
    start = time.perf_counter()
    engine.upscale(source, UpscaleParams(4, 4096, 4096), _quiet)
    print(f"  whole engine call (tiles + colour match): {time.perf_counter() - start:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--only", choices=("resample", "faithfulness", "spandrel"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (spandrel)")
    args = parser.parse_args()
    if args.only in (None, "resample"):
        bench_resample(args.runs)
    if args.only in (None, "faithfulness"):
        bench_faithfulness()
    if args.only in (None, "spandrel"):
        bench_spandrel(args.runs, args.threads)


if __name__ == "__main__":
    main()
