"""The fill engine against the classical one (Navier-Stokes): quality, texture, streaks, speed.

1. Holes punched in textured parts of scikit-image's photographs, where the original is the
   ground truth: PSNR and SSIM of the filled pixels, and the texture and streak measures
   of proofroom/server/engines/texture.py. Object silhouettes of four sizes (the smallest a
   blemish, which the fill engine also gives Navier-Stokes) and thin scribbles
   (Navier-Stokes in both engines).
2. Object removal, where no ground truth exists: the space shuttle model in the astronaut
   photograph scaled to 1024 px, once as the issue's 320x500 box and once as its outline.
   Texture and streaks; the pictures are saved to look at.
3. Variants: how much two seeds' fills differ inside the hole.
4. Speed: run_fix (crop, engine, colour and grain matching, composite, check) on the
   320x500 box and on a 64-pixel blemish in the 1024-px photograph; medians.

Everything goes through compositing.run_fix, the path a job takes.

    .venv/bin/python scripts/bench_fill.py                  # everything, ~1-2 minutes
    .venv/bin/python scripts/bench_fill.py --quick          # smoke run, ~15 seconds
    .venv/bin/python scripts/bench_fill.py --set WORK_PIXELS=80000 --only quality
"""

from __future__ import annotations

import argparse
import ast
import itertools
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from skimage import data
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proofroom.server.engines import compositing, fill, texture
from proofroom.server.engines.base import Engine, InpaintParams
from proofroom.server.engines.classical import ClassicalEngine
from tests.images import sized

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
SIZES = (48, 96, 160, 256)
SCRIBBLE = 96
#: The issue's case: a 320x500 box over the shuttle model in the 1024-px astronaut photo.
SHUTTLE_BOX = (690, 0, 320, 500)
#: The model's outline (tank, boosters, orbiter, stand and its foot), before a 10-px margin.
SHUTTLE_OUTLINE = (
    (790, 0), (860, 0), (870, 70), (905, 70), (910, 380), (935, 470), (915, 500),
    (905, 560), (950, 565), (950, 590), (730, 590), (730, 565), (760, 560), (740, 500),
    (700, 470), (720, 400), (760, 330), (760, 80), (790, 75),
)  # fmt: skip


def photograph(name: str) -> np.ndarray:
    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.dstack([image] * 3)
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


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


def scribble(rng: np.random.Generator, size: int, thickness: int = 5) -> np.ndarray:
    """Thin brush strokes in a size x size box, as a user marks a scratch or a wire."""
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(3):
        points = rng.integers(4, size - 4, size=(4, 2))
        cv2.polylines(canvas, [points.astype(np.int32)], False, 1, thickness)
    return canvas.astype(bool)


def textured_place(image: np.ndarray, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A full-size mask with ``shape`` where the photograph is busier than its median."""
    lum = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = np.abs(lum - cv2.GaussianBlur(lum, (0, 0), 3.0))
    h, w = shape.shape
    height, width = lum.shape
    best, where = -1.0, (0, 0)
    for _ in range(24):
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        score = float(np.median(detail[y : y + h, x : x + w][shape]))
        if score > best:
            best, where = score, (y, x)
    mask = np.zeros((height, width), bool)
    y, x = where
    mask[y : y + h, x : x + w] = shape
    return mask


def shuttle_masks() -> dict[str, np.ndarray]:
    box = np.zeros((1024, 1024), bool)
    x, y, w, h = SHUTTLE_BOX
    box[y : y + h, x : x + w] = True
    outline = np.zeros((1024, 1024), np.uint8)
    cv2.fillPoly(outline, [np.array(SHUTTLE_OUTLINE, np.int32)], 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (21, 21))
    return {"shuttle box 320x500": box, "shuttle outline": cv2.dilate(outline, kernel) > 0}


def fixed(image: np.ndarray, mask: np.ndarray, engine: Engine, seed: int = 0) -> np.ndarray:
    """The picture as the layer shows it: run_fix's patch composited over the parent."""
    result = compositing.run_fix(image, mask, engine, InpaintParams(seed=seed), no_progress)
    return compositing.apply_patch(image, result.patch, result.box)


def no_progress(step: int, total: int, preview: np.ndarray | None) -> None:
    """Progress is not measured here."""


def quality(original: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and mean SSIM of the masked pixels."""
    diff = original[mask].astype(np.float64) - filled[mask]
    mse = float(np.mean(diff**2))
    psnr = 10 * math.log10(255**2 / mse) if mse else math.inf
    _, ssim_map = structural_similarity(original, filled, channel_axis=2, data_range=255, full=True)
    return psnr, float(ssim_map[mask].mean())


def engines() -> dict[str, Engine]:
    return {"classical (NS)": ClassicalEngine(), "fill": fill.FillEngine()}


def crop_view(images: list[np.ndarray], mask: np.ndarray, side: int = 220) -> np.ndarray:
    """The pictures side by side, cropped around the mask (with context), ``side`` px tall."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    box = compositing.context_box((x, y, w, h), mask.shape[1], mask.shape[0])
    bx, by, bw, bh = box
    scale = side / bh
    tiles = [
        cv2.resize(i[by : by + bh, bx : bx + bw], (round(bw * scale), side), cv2.INTER_AREA)
        for i in images
    ]
    gap = np.full((side, 4, 3), 255, np.uint8)
    row = [tiles[0]]
    for tile in tiles[1:]:
        row += [gap, tile]
    return np.hstack(row)


def save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def holed(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[mask] = (255, 0, 255)
    return out


def ground_truth(args: argparse.Namespace) -> None:
    made = engines()
    # rows[(shape, engine)] -> list of (psnr, ssim, streaks, texture)
    rows: dict[tuple[str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    truth: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sheets: dict[str, list[np.ndarray]] = defaultdict(list)
    cases = [(s, "object") for s in args.sizes] + [(SCRIBBLE, "scribble")]
    for name, (size, kind), number in itertools.product(args.photos, cases, range(args.cases)):
        image = photograph(name)
        rng = np.random.default_rng([PHOTOS.index(name), size, number, kind == "object"])
        shape = silhouette(rng, size) if kind == "object" else scribble(rng, size)
        mask = textured_place(image, shape, rng)
        label = f"{kind} {size} px"
        outs = []
        for engine_name, engine in made.items():
            out = fixed(image, mask, engine)
            psnr, ssim = quality(image, out, mask)
            streaks, detail = math.nan, math.nan
            if kind == "object":
                measured = texture.measure(out, mask)
                streaks, detail = measured.streaks, measured.texture
            rows[(label, engine_name)].append((psnr, ssim, streaks, detail))
            outs.append(out)
        if kind == "object":
            measured = texture.measure(image, mask)
            truth[label].append((measured.streaks, measured.texture))
        if number == 0:
            sheets[label].append(crop_view([image, holed(image, mask), *outs], mask))
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    n = len(args.photos) * args.cases
    print(f"## Holes in textured parts of photographs ({n} per row, {len(args.photos)} photos)\n")
    print("streaks: the hole's orientation coherence minus the ring's (0 = as orderly as the")
    print("surroundings); texture: the hole's median band-pass detail over the ring's (1 = as")
    print("detailed). Scribbles are too thin to measure; both engines use Navier-Stokes on them.\n")
    print("| hole | engine | PSNR dB | SSIM | streaks | texture |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (label, engine_name), values in rows.items():
        psnr = statistics.fmean(v[0] for v in values)
        ssim = statistics.fmean(v[1] for v in values)
        streaks = statistics.fmean(v[2] for v in values)
        detail = statistics.fmean(v[3] for v in values)
        cells = [f"{psnr:.2f}", f"{ssim:.3f}"]
        cells += ["-", "-"] if math.isnan(streaks) else [f"{streaks:+.3f}", f"{detail:.2f}"]
        print(f"| {label} | {engine_name} | {' | '.join(cells)} |")
    for label, values in truth.items():
        streaks = statistics.fmean(v[0] for v in values)
        detail = statistics.fmean(v[1] for v in values)
        print(f"| {label} | (the original) | - | - | {streaks:+.3f} | {detail:.2f} |")
    for label, tiles in sheets.items():
        width = max(t.shape[1] for t in tiles)
        padded = [np.pad(t, ((0, 4), (0, width - t.shape[1]), (0, 0)), constant_values=255)
                  for t in tiles]  # fmt: skip
        save(args.out / f"holes-{label.replace(' ', '-')}.png", np.vstack(padded))


def object_removal(args: argparse.Namespace) -> None:
    image = sized("astronaut", 1024, 1024)
    made = engines()
    print("\n## Object removal: the shuttle model (astronaut, 1024 px)\n")
    print("| mask | engine | streaks | texture | coherence hole / ring |")
    print("| --- | --- | --- | --- | --- |")
    for label, mask in shuttle_masks().items():
        outs = []
        for engine_name, engine in made.items():
            out = fixed(image, mask, engine)
            m = texture.measure(out, mask)
            print(
                f"| {label} | {engine_name} | {m.streaks:+.3f} | {m.texture:.2f} "
                f"| {m.coherence_hole:.2f} / {m.coherence_ring:.2f} |"
            )
            outs.append(out)
        outs.append(fixed(image, mask, made["fill"], seed=1))
        slug = label.split()[1]
        save(args.out / f"shuttle-{slug}.png", crop_view([image, *outs], mask, side=480))
    print("\nPictures: original | classical | fill seed 0 | fill seed 1.")


def variants(args: argparse.Namespace) -> None:
    made = engines()
    print("\n## Variants: two seeds' fills compared inside 96-px holes\n")
    print("Both blurred (sigma 2 px) first: the seeded grain alone differs pixel by pixel.\n")
    print("| engine | mean abs diff (/255) | pixels differing by > 16 | cases |")
    print("| --- | --- | --- | --- |")
    for engine_name, engine in made.items():
        means, share = [], []
        for name, number in itertools.product(args.photos, range(args.cases)):
            image = photograph(name)
            rng = np.random.default_rng([PHOTOS.index(name), 96, number, 2])
            mask = textured_place(image, silhouette(rng, 96), rng)
            # Blurred past the grain: seeded grain alone differs pixel by pixel, unseen.
            a, b = (
                cv2.GaussianBlur(fixed(image, mask, engine, seed), (0, 0), 2.0)[mask]
                for seed in (0, 1)
            )
            diff = np.abs(a.astype(np.int16) - b)
            means.append(float(diff.mean()))
            share.append(float(np.mean(diff.max(axis=1) > 16)))
        print(
            f"| {engine_name} | {statistics.fmean(means):.1f} "
            f"| {statistics.fmean(share):.0%} | {len(means)} |"
        )


def speed(args: argparse.Namespace) -> None:
    image = sized("astronaut", 1024, 1024)
    box = shuttle_masks()["shuttle box 320x500"]
    blemish = np.zeros((1024, 1024), bool)
    blemish[300:364, 150:214] = silhouette(np.random.default_rng(7), 64)
    made = engines()
    chosen: dict[str, object] = {}
    print("\n## Speed (run_fix, astronaut at 1024 px; median of several runs)\n")
    print("CPU: the process's CPU time (the machine is shared; wall time includes waiting).\n")
    print("| case | engine | run_fix ms | CPU ms | of which engine ms | runs |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, mask, runs in (
        ("320x500 box", box, args.runs),
        ("64-px blemish", blemish, args.runs * 4),
    ):
        for engine_name, engine in made.items():
            totals, inner, cpu = [], [], []
            for seed in range(runs):
                start, start_cpu = time.perf_counter(), time.process_time()
                result = compositing.run_fix(
                    image, mask, engine, InpaintParams(seed=seed), no_progress
                )
                totals.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
                inner.append(sum(c["engine_s"] for c in result.details["compositing"]["crops"]))
            if engine_name == "fill":
                chosen[label] = made["fill"].last_details
            print(
                f"| {label} | {engine_name} | {statistics.median(totals) * 1000:.0f} "
                f"| {statistics.median(cpu) * 1000:.0f} "
                f"| {statistics.median(inner) * 1000:.0f} | {runs} |"
            )
    for label, details in chosen.items():
        print(f"\nThe fill engine on the {label}: `{details}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two photos, one case, 3 runs")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--cases", type=int, default=3, help="masks per photo and size")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of the big hole")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_fill"), help="PNGs here")
    parser.add_argument(
        "--only", nargs="+", choices=["quality", "removal", "variants", "speed"], default=None
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE",
        help="override a tuning constant of engines/fill.py (to compare settings)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.photos, args.cases, args.runs = ["astronaut", "coffee"], 1, 3
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(fill, key):
            parser.error(f"engines/fill.py has no {key}")
        setattr(fill, key, type(getattr(fill, key))(ast.literal_eval(value)))
    print(f"fill settings: {args.set or 'defaults'}\n")
    parts = args.only or ["quality", "removal", "variants", "speed"]
    if "quality" in parts:
        ground_truth(args)
    if "removal" in parts:
        object_removal(args)
    if "variants" in parts:
        variants(args)
    if "speed" in parts:
        speed(args)
    print(f"\nPictures in {args.out}")


if __name__ == "__main__":
    main()
