"""GPU benchmark of the diffusion engine, next to a plain diffusers pipeline call.

The model has Stable Diffusion 1.5 inpainting's architecture (9-channel UNet, 860 M parameters;
VAE; 12-layer CLIP text encoder) with random weights made from its configs, so nothing is
downloaded; the speed is the real model's, the images are noise. It is saved once and loaded
the way Proofroom loads a model (``from_pretrained`` on a folder), then timed three ways:

- ``plain``: ``pipe(prompt, image, mask_image, ...)`` on a pipeline sharing the engine's modules
  (with its own, untouched scheduler): what diffusers alone costs;
- ``engine``: ``DiffusionEngine.inpaint`` (input checks, per-step callback, throttled previews);
- ``job``: ``compositing.run_fix`` on a larger parent image (crop around the mask, resize to
  the bucket, inpaint, colour match, composite), when that module exists.

Each with and without ``torch.compile`` of the UNet; after warm-up runs, median of ``--runs``,
with ``torch.cuda.synchronize`` around every timed call.

    .venv/bin/python scripts/bench_gpu.py                               # on a GPU machine
    .venv/bin/python scripts/bench_gpu.py --tiny --device cpu --runs 2  # smoke test, CPU
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import make_tiny_pipeline as tiny  # scripts/ is on sys.path when this file runs
import numpy as np

#: Stable Diffusion 1.5 inpainting (stable-diffusion-v1-5/stable-diffusion-inpainting) configs.
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE: dict[str, Any] = {
    "sample_size": 512,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
}


def sd15_text(vocab_size: int) -> dict[str, Any]:
    """CLIP ViT-L/14's text tower; the token ids come from the byte-level tokenizer."""
    return {
        **tiny.text_config(vocab_size),
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "max_position_embeddings": 77,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
    }


def build_model(out: Path, args: argparse.Namespace) -> None:
    """Write the model (random weights, float16 on CUDA) to ``out`` unless it is there."""
    import torch
    from diffusers import PNDMScheduler

    if (out / "model_index.json").is_file():
        return
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = tiny.write_tokenizer_files(Path(tmp))
    started = time.perf_counter()
    if args.tiny:
        pipe = tiny.build_pipeline(
            tiny.unet_config(), tiny.vae_config(), tiny.text_config(vocab_size)
        )
    else:
        # SD 1.5 inpainting ships PNDM; previews then use the VP estimate of x0.
        scheduler = PNDMScheduler(**tiny.SD_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False)
        with torch.device(args.device):  # random init on the GPU takes seconds, not a minute
            pipe = tiny.build_pipeline(SD15_UNET, SD15_VAE, sd15_text(vocab_size), 0, scheduler)
    if args.device.startswith("cuda"):
        pipe.to(torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)
    del pipe
    print(f"built {out} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def inputs(side: int) -> tuple[np.ndarray, np.ndarray]:
    """A noise image and a centred square mask, half the side."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    mask = np.zeros((side, side), bool)
    mask[side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = True
    return image, mask


def timed(
    calls: dict[str, Callable[[], object]], runs: int, warmup: int, sync: Callable[[], None]
) -> dict[str, dict[str, float]]:
    """Per call: the median and min seconds of ``runs`` calls after ``warmup`` more.

    The calls take turns, so a machine that slows down or speeds up mid-run (other load,
    clocks, thermals) affects them alike.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(warmup + runs):
        for name, fn in calls.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"median": statistics.median(values[warmup:]), "min": min(values[warmup:])}
        for name, values in times.items()
    }


def paths(engine: Any, args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    """The calls to time, by name; each runs one image at the bucket size."""
    from PIL import Image

    from proofroom.server.engines import InpaintParams

    side = engine.bucket
    image, mask = inputs(side)
    params = InpaintParams(prompt="a red apple on a table", seed=1, steps=args.steps)
    components = dict(engine.pipe.components)
    scheduler = components["scheduler"]
    components["scheduler"] = type(scheduler).from_config(scheduler.config)
    if "safety_checker" in components:
        components["requires_safety_checker"] = False
    plain = type(engine.pipe)(**components)
    plain.set_progress_bar_config(disable=True)
    import torch

    pil_image, pil_mask = Image.fromarray(image), Image.fromarray(mask.astype(np.uint8) * 255)

    def run_plain() -> object:
        return plain(
            prompt=params.prompt,
            image=pil_image,
            mask_image=pil_mask,
            height=side,
            width=side,
            num_inference_steps=params.steps,
            strength=params.strength,
            guidance_scale=params.guidance,
            generator=torch.Generator("cpu").manual_seed(params.seed),
            output_type="np",
        )

    def nothing(step: int, total: int, preview: object) -> None:
        pass

    calls: dict[str, Callable[[], object]] = {
        "plain": run_plain,
        "engine": lambda: engine.inpaint(image, mask, params, nothing),
    }
    try:
        from proofroom.server.engines.compositing import run_fix
    except ImportError:
        print(
            "compositing.run_fix not found: timing DiffusionEngine.inpaint alone", file=sys.stderr
        )
    else:
        # A parent twice the bucket with the same mask: the job crops around it and resizes.
        parent, parent_mask = inputs(2 * side)
        calls["job"] = lambda: run_fix(parent, parent_mask, engine, params, nothing)
    return calls


def bench(model: Path, compiled: bool, args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from proofroom.server.engines.diffusion import DiffusionEngine

    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    engine = DiffusionEngine(str(model), device=args.device, compile=compiled)
    calls = paths(engine, args)
    first = {}
    for name, call in list(calls.items()):  # the first calls: kernels load, torch compiles
        sync()
        start = time.perf_counter()
        try:
            call()
        except Exception as exc:  # one broken path must not lose the others' numbers
            print(f"{name} (compile={compiled}) failed: {exc!r}", file=sys.stderr)
            del calls[name]
            continue
        sync()
        first[name] = time.perf_counter() - start
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    results = timed(calls, args.runs, max(args.warmup - 1, 0), sync)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    rows = []
    for name, result in results.items():
        row: dict[str, Any] = {"path": name, "compiled": compiled, "first": first[name]}
        row.update(result, size=engine.bucket)
        if peak is not None:
            row["peak_gib"] = peak  # over all paths: they share the model
        rows.append(row)
    del engine
    if cuda:
        torch.cuda.empty_cache()
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    import torch

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    versions = ", ".join(
        f"{lib} {importlib.metadata.version(lib)}" for lib in ("torch", "diffusers", "transformers")
    )
    model = "tiny SD inpaint (random weights)" if args.tiny else "SD 1.5 inpainting architecture"
    dtype = "float16" if args.device.startswith("cuda") else "float32"
    lines = [
        f"{model}, {rows[0]['size'] if rows else '?'} px, {args.steps} steps, {dtype} "
        f"on {device} ({args.device}); {versions}; median of {args.runs} after {args.warmup} "
        "warm-up runs",
        "",
        "| path | torch.compile | first run s | median s | min s | steps/s | vs plain |"
        + (" peak GiB |" if args.device.startswith("cuda") else ""),
        "| --- | --- | --- | --- | --- | --- | --- |"
        + (" --- |" if args.device.startswith("cuda") else ""),
    ]
    for row in rows:
        base = next(
            (r for r in rows if r["path"] == "plain" and r["compiled"] == row["compiled"]), None
        )
        ratio = f"{row['median'] / base['median'] - 1:+.1%}" if base else "-"
        line = (
            f"| {row['path']} | {'yes' if row['compiled'] else 'no'} | {row['first']:.2f} | "
            f"{row['median']:.3f} | {row['min']:.3f} | {args.steps / row['median']:.2f} | {ratio} |"
        )
        if "peak_gib" in row:
            line += f" {row['peak_gib']:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="cuda (default when available) or cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model (smoke test)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--compile",
        choices=["auto", "both", "on", "off"],
        default="auto",
        help="time with torch.compile too (auto: both on CUDA, off on CPU)",
    )
    parser.add_argument("--model-dir", type=Path, help="keep the random model here for reruns")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu --tiny")
    if not args.device.startswith("cuda"):
        torch.set_num_threads(1 if args.tiny else torch.get_num_threads())
    compile_modes = {
        "auto": [False, True] if args.device.startswith("cuda") else [False],
        "both": [False, True],
        "on": [True],
        "off": [False],
    }[args.compile]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model_dir or Path(tmp) / "model"
        build_model(model, args)
        rows = [row for compiled in compile_modes for row in bench(model, compiled, args)]
    print(table(rows, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
