"""Write a tiny Stable Diffusion inpainting pipeline with random weights to a folder.

It has the architecture of the real thing (a 9-channel UNet, a VAE that downsamples by 8, a
CLIP text encoder and a byte-level BPE tokenizer) at a size that runs on a CPU in well under a
second, so tests and CI exercise the real diffusers code path: the engine loads it with the same
``from_pretrained(path)`` call that loads a real model. The images it makes are noise.

    .venv/bin/python scripts/make_tiny_pipeline.py /tmp/tiny-inpaint
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Side of the images the tiny pipeline makes by default (UNet sample size x 8).
TINY_SIZE = 256
SEED = 0
#: Stable Diffusion's training noise schedule, for any scheduler made from a config.
SD_SCHEDULE: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def write_tokenizer_files(folder: Path) -> int:
    """Write a byte-level CLIP vocab.json and merges.txt (no merges); return the vocab size.

    Every byte is a token, alone or ending a word (``</w>``), so any prompt tokenizes.
    """
    symbols = sorted(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]:
        vocab[token] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


def unet_config(in_channels: int = 9) -> dict[str, Any]:
    """Two resolution levels, 32 and 64 channels, cross-attention on the low-resolution one."""
    return {
        "sample_size": TINY_SIZE // 8,
        "in_channels": in_channels,
        "out_channels": 4,
        "block_out_channels": (32, 64),
        "layers_per_block": 1,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": 32,
        "attention_head_dim": 4,
        "norm_num_groups": 32,
    }


def vae_config() -> dict[str, Any]:
    """Four blocks, so the VAE still downsamples by 8 like SD's; 4 latent channels."""
    return {
        "sample_size": TINY_SIZE,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (32, 32, 64, 64),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
    }


def text_config(vocab_size: int) -> dict[str, Any]:
    """A two-layer CLIP text encoder; its eos id is the tokenizer's ``<|endoftext|>``."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "projection_dim": 32,
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
    }


def build_pipeline(
    unet: dict[str, Any],
    vae: dict[str, Any],
    text: dict[str, Any],
    seed: int = SEED,
    scheduler: Any = None,
) -> Any:
    """A StableDiffusionInpaintPipeline from configs with seeded random weights (float32).

    Modules are made on torch's current default device (``with torch.device("cuda"):``).
    ``scheduler`` defaults to DDIM with SD's training schedule.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
    return StableDiffusionInpaintPipeline(
        vae=AutoencoderKL(**vae).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text)).eval(),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet).eval(),
        scheduler=scheduler
        or DDIMScheduler(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=False),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_pipeline(out_dir: str | Path, seed: int = SEED) -> Path:
    """Build the tiny inpainting pipeline and ``save_pretrained`` it into ``out_dir``."""
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = write_tokenizer_files(Path(tmp))
    pipe = build_pipeline(unet_config(), vae_config(), text_config(vocab_size), seed)
    pipe.save_pretrained(out, safe_serialization=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the pipeline into")
    parser.add_argument("--seed", type=int, default=SEED, help="seed of the random weights")
    args = parser.parse_args(argv)
    out = build_tiny_pipeline(args.out_dir, args.seed)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
