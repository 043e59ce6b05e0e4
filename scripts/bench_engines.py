"""Classical inpainting methods compared on real photographs, and "cost follows the mask".

1. Fill quality and speed of OpenCV's TELEA, Navier-Stokes and xphoto FSR (fast, best) on
   scikit-image's sample photographs, with scribbled ("random") and silhouette ("object")
   masks of 32, 64, 128 and 256 pixels. Each method fills the crop that ``run_fix`` would
   give it; quality is PSNR and SSIM (scikit-image) of the filled pixels against the
   original ones, time the median of several runs of the method alone.
2. The compositing steps on the default method's fills: raw fill, + colour matching,
   + grain matching, + feathered composite (what a layer shows).
3. ``run_fix`` with the default classical engine for the same 256-pixel mask in a 512-pixel
   and in a 4096-pixel image (the photograph mirrored to size): median times and their
   ratio (the target is at most 2x).
4. ``recolor``: a 500x500 object (an ellipse; and a square) in a 4096-pixel photograph
   recoloured through ``run_fix`` (target: at most 150 ms), and the engine call alone.

    .venv/bin/python scripts/bench_engines.py            # everything, ~5 minutes
    .venv/bin/python scripts/bench_engines.py --quick    # smoke run, ~20 seconds
    .venv/bin/python scripts/bench_engines.py --recolor-only [--runs 9]

FSR_BEST takes seconds even on small crops (minutes on a 256-pixel mask), so it runs once
per case and only on masks up to ``--best-max`` pixels.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proofroom.server.engines import compositing
from proofroom.server.engines.base import InpaintParams
from proofroom.server.engines.classical import (
    DEFAULT_METHOD,
    METHODS,
    ClassicalEngine,
)
from tests.images import PHOTOS, photo, tiled

SHAPES = ("random", "object")
T = TypeVar("T")


def scribble(rng: np.random.Generator, size: int) -> np.ndarray:
    """A size x size box of brush strokes, as a user marks a blemish."""
    canvas = np.zeros((size, size), np.uint8)
    thickness = max(3, size // 6)
    margin = thickness // 2 + 1
    for _ in range(int(rng.integers(2, 5))):
        points = rng.integers(margin, size - margin, size=(int(rng.integers(3, 6)), 2))
        cv2.polylines(canvas, [points.astype(np.int32)], False, 1, thickness)
    return canvas.astype(bool)


def silhouette(rng: np.random.Generator, size: int) -> np.ndarray:
    """A size x size box holding a smooth, star-shaped blob, as a user outlines an object."""
    angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    radius = np.ones_like(angles)
    for harmonic in range(2, 6):
        radius += rng.uniform(-0.15, 0.15) * np.cos(harmonic * angles + rng.uniform(0, 6.3))
    radius *= (size / 2 - 1) / radius.max()
    points = np.stack([np.cos(angles) * radius, np.sin(angles) * radius], 1) + size / 2
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 1)
    return canvas.astype(bool)


def place(shape: np.ndarray, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A full-size mask with ``shape`` at a random place inside the image."""
    mask = np.zeros(image.shape[:2], bool)
    h, w = shape.shape
    y = int(rng.integers(0, image.shape[0] - h + 1))
    x = int(rng.integers(0, image.shape[1] - w + 1))
    mask[y : y + h, x : x + w] = shape
    return mask


def quality(original: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and mean SSIM of the masked pixels."""
    diff = original[mask].astype(np.float64) - filled[mask]
    mse = float(np.mean(diff**2))
    psnr = 10 * math.log10(255**2 / mse) if mse else math.inf
    _, ssim_map = structural_similarity(original, filled, channel_axis=2, data_range=255, full=True)
    return psnr, float(ssim_map[mask].mean())


def timed(fn: Callable[[], T], runs: int, slow: float = 0.5) -> tuple[float, T]:
    """The median time of ``runs`` calls (one if the first takes over ``slow`` seconds)
    and the last result."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        if times[0] > slow:
            break
    return statistics.median(times), result


def crop_case(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The crop ``run_fix`` hands a native-resolution engine for this one-part mask."""
    ys, xs = np.nonzero(mask)
    part = (int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)
    x, y, w, h = compositing.context_box(part, image.shape[1], image.shape[0])
    return image[y : y + h, x : x + w].copy(), mask[y : y + h, x : x + w].copy()


def no_progress(step: int, total: int, preview: np.ndarray | None) -> None:
    """Progress is not measured here."""


def compare_methods(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    engines = {name: ClassicalEngine(name) for name in args.methods}
    params = InpaintParams()
    # results[method][size] -> list of (psnr, ssim, seconds)
    results: dict[str, dict[int, list[tuple[float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    stages: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, size, kind, number in itertools.product(
        args.photos, args.sizes, SHAPES, range(args.cases)
    ):
        image = photo(name)
        # Each case has its own seed: the same masks whatever else runs.
        case = np.random.default_rng(
            [args.seed, PHOTOS.index(name), size, SHAPES.index(kind), number]
        )
        shape = (scribble if kind == "random" else silhouette)(case, size)
        crop, cmask = crop_case(image, place(shape, image, case))
        for method, engine in engines.items():
            if method == "fsr_best" and size > args.best_max:
                continue
            seconds, fill = timed(
                lambda e=engine, c=crop, m=cmask: e.inpaint(c, m, params, no_progress),
                args.runs,
            )
            psnr, ssim = quality(crop, fill, cmask)
            results[method][size].append((psnr, ssim, seconds))
            if method == args.default:
                for drift, engine_out in (("clean", fill), ("drift", drifted(fill))):
                    for stage, out in composite_stages(crop, cmask, engine_out, rng):
                        stages[f"{stage}|{drift}"].append(quality(crop, out, cmask))
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    per_size = len(args.photos) * len(SHAPES) * args.cases
    print(f"## Classical methods ({per_size} masks per size on {len(args.photos)} photos)\n")
    baseline = args.methods[0]
    print(
        f"| method | mask px | PSNR dB (mean) | PSNR vs {baseline} (paired) | SSIM (mean) "
        "| time ms (median) | masks |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for method in args.methods:
        for size in args.sizes:
            rows = results[method].get(size)
            if not rows:
                print(f"| {method} | {size} | not run | | | | 0 |")
                continue
            paired = [r[0] - b[0] for r, b in zip(rows, results[baseline][size], strict=True)]
            print(
                f"| {method} | {size} | {statistics.fmean(r[0] for r in rows):.2f} "
                f"| {statistics.fmean(paired):+.2f} "
                f"| {statistics.fmean(r[1] for r in rows):.3f} "
                f"| {statistics.median(r[2] for r in rows) * 1000:.1f} | {len(rows)} |"
            )
    print(f"\n## Compositing steps on {args.default} fills (same cases)\n")
    print("drift: the engine's whole output (context too) shifted as a VAE shifts colour.\n")
    print("| stage | PSNR dB | SSIM | PSNR dB, drift | SSIM, drift |")
    print("| --- | --- | --- | --- | --- |")
    for stage in dict.fromkeys(key.split("|")[0] for key in stages):
        cells = []
        for drift in ("clean", "drift"):
            rows = stages[f"{stage}|{drift}"]
            cells += [
                f"{statistics.fmean(r[0] for r in rows):.2f}",
                f"{statistics.fmean(r[1] for r in rows):.3f}",
            ]
        print(f"| {stage} | {' | '.join(cells)} |")


def u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def drifted(fill: np.ndarray) -> np.ndarray:
    """The fill with a diffusion VAE's kind of drift over the whole crop (context too)."""
    lab = cv2.cvtColor(fill.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    lab[..., 0] = lab[..., 0] * 0.92 + 6
    lab[..., 1] += 3
    lab[..., 2] -= 4
    return u8(np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1) * 255)


def fill_to_ring(fill: np.ndarray, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The alternative: the fill's own LAB mean and spread inside the mask set to the
    ring's (spread scaled 0.5-2x)."""
    ring = compositing.ring_mask(mask)
    lab = cv2.cvtColor(fill.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(crop.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)[ring]
    inside = lab[mask]
    scale = np.clip(ref.std(0) / np.maximum(inside.std(0), 1e-3), 0.5, 2.0)
    lab[mask] = (inside - inside.mean(0)) * scale + ref.mean(0)
    rgb = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1) * 255
    return np.where(mask[..., None], u8(rgb), fill)


def composite_stages(
    crop: np.ndarray, mask: np.ndarray, fill: np.ndarray, rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """The fill after each compositing step (only the pixels inside the mask are scored)."""
    ring = compositing.ring_mask(mask)
    coloured, _ = compositing.match_colour(fill, crop, mask, ring)
    grained, _ = compositing.match_grain(coloured.copy(), crop, mask, ring, rng)
    alpha = np.rint(compositing.composite_alpha(mask) * 255).astype(np.uint8)
    patch = np.dstack([u8(grained), alpha])
    return [
        ("raw fill", fill),
        ("alternative: fill's mean+spread to the ring's", fill_to_ring(fill, crop, mask)),
        ("colour match (engine's ring to parent's ring)", u8(coloured)),
        ("+ grain match", u8(grained)),
        ("+ feathered composite (the layer)", compositing.composite_region(crop, patch)),
    ]


def cost_follows_mask(args: argparse.Namespace) -> None:
    engine = ClassicalEngine(args.default)
    params = InpaintParams()
    shape = silhouette(np.random.default_rng(args.seed), 256)
    print(f"\n## Cost follows the mask (run_fix, classical {args.default})\n")
    print("| mask | image | run_fix ms (median) | ratio to 512 px |")
    print("| --- | --- | --- | --- |")
    for size in (256, 32):
        part = shape if size == 256 else silhouette(np.random.default_rng(args.seed), size)
        base: float | None = None
        for side in (512, 4096):
            image = tiled("astronaut", side)
            mask = np.zeros((side, side), bool)
            mask[128 : 128 + size, 128 : 128 + size] = part
            seconds, _ = timed(
                lambda i=image, m=mask: compositing.run_fix(i, m, engine, params, no_progress),
                args.runs * 2 + 1,
            )
            base = base or seconds
            print(f"| {size} px | {side} px | {seconds * 1000:.1f} | {seconds / base:.2f}x |")


def recolor_speed(args: argparse.Namespace) -> None:
    from proofroom.server.engines.recolor import RecolorEngine

    engine = RecolorEngine()
    image = tiled("astronaut", 4096)
    print("\n## recolor: a 500x500 region of a 4096x4096 photograph\n")
    print("| region | masked pixels | run_fix (median) | engine alone (median) | runs |")
    print("|---|---|---|---|---|")
    for shape in ("ellipse", "square"):
        mask = np.zeros(image.shape[:2], np.uint8)
        if shape == "ellipse":
            cv2.ellipse(mask, (2048, 2048), (250, 250), 0, 0, 360, 1, -1)
        else:
            mask[1798:2298, 1798:2298] = 1
        hole = mask.astype(bool)
        params = InpaintParams(color="#2e7d32")
        whole, result = timed(
            lambda hole=hole, params=params: compositing.run_fix(
                image, hole, engine, params, no_progress
            ),
            args.runs * 2 + 1,
        )
        x, y, w, h = result.details["compositing"]["crops"][0]["box"]
        crop, cmask = image[y : y + h, x : x + w].copy(), hole[y : y + h, x : x + w].copy()
        alone, _ = timed(
            lambda crop=crop, cmask=cmask, params=params: engine.inpaint(
                crop, cmask, params, no_progress
            ),
            args.runs * 2 + 1,
        )
        print(
            f"| {shape} 500x500 | {int(hole.sum())} | {whole * 1000:.1f} ms |"
            f" {alone * 1000:.1f} ms | {args.runs * 2 + 1} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two photos, two sizes, 1 run")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128, 256])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--default", default=DEFAULT_METHOD, choices=list(METHODS))
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--best-max", type=int, default=64, help="largest mask for fsr_best")
    parser.add_argument("--cases", type=int, default=2, help="masks per photo, size and shape")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--recolor-only", action="store_true", help="only section 4")
    args = parser.parse_args()
    if args.quick:
        args.photos, args.sizes, args.runs, args.cases = args.photos[:2], [32, 64], 1, 1
    cv2.setNumThreads(1)  # one worker thread per job in the server; measure the same
    print(f"command: {shlex.join(['.venv/bin/python', *sys.argv])}")
    print(f"opencv {cv2.__version__}, numpy {np.__version__}, 1 OpenCV thread\n")
    if not args.recolor_only:
        compare_methods(args)
        cost_follows_mask(args)
    recolor_speed(args)


if __name__ == "__main__":
    main()
