"""Turning a fix request's mask (PNG data URL, blob id, or region) into pixels."""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...shared.errors import BadRequest, PayloadTooLarge
from ..images import png_declared_size, run_image_job
from ..store.blobs import BlobStore, is_blob_id

MAX_MASK_BYTES = 16 * 1024 * 1024


def decode_mask_png(data: bytes, width: int, height: int) -> np.ndarray:
    """A PNG mask (white or opaque = fix here) of exactly the image's size, as bool HxW."""
    if len(data) > MAX_MASK_BYTES:
        raise BadRequest("the mask is too large")
    declared = png_declared_size(data)
    if declared is None:
        raise BadRequest("the mask must be a PNG image")
    if declared != (width, height):
        # Before Pillow sees it: a small file may claim 30000x30000 (a decompression bomb).
        raise BadRequest(f"the mask is {declared[0]}x{declared[1]}; it must be {width}x{height}")
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG"])
    except (UnidentifiedImageError, OSError, ValueError):
        raise BadRequest("the mask must be a PNG image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Only when the session itself exceeds Pillow's ceiling (max_image_pixels raised).
        raise PayloadTooLarge(f"a {width}x{height} mask is more than Pillow decodes") from None
    with img:
        if img.size != (width, height):
            raise BadRequest(
                f"the mask is {img.size[0]}x{img.size[1]}; it must be {width}x{height}"
            )
        try:
            img.load()
        except (OSError, ValueError, SyntaxError):
            raise BadRequest("the mask PNG could not be decoded") from None
        if img.mode == "1":
            # Pillow's 1-bit pixels arrive as 0/255 bytes: compare, so that the bools are
            # canonical 0/1 (a byte view of them is used as a 0/1 weight downstream).
            canonical: np.ndarray = np.asarray(img, dtype=np.uint8) != 0
            return canonical
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            alpha = np.asarray(img.convert("RGBA"))[..., 3]
            if alpha.min() != alpha.max():
                return alpha > 127
        return np.asarray(img.convert("L")) > 127


async def mask_from_request(value: Any, blobs: BlobStore, width: int, height: int) -> np.ndarray:
    """A mask given as ``data:image/png;base64,...`` or as a blob id."""
    if not isinstance(value, str):
        raise BadRequest("mask must be a PNG data URL or a blob id")
    if is_blob_id(value):
        png = await blobs.get(value)
        return await run_image_job(lambda: decode_mask_png(png, width, height))
    prefix = "data:image/png;base64,"
    if not value.startswith(prefix):
        raise BadRequest("mask must be a PNG data URL (data:image/png;base64,...) or a blob id")
    # Both the base64 of up to 16 MiB and the pixels are decoded off the event loop.
    return await run_image_job(lambda: _decode_data_url(value[len(prefix) :], width, height))


def _decode_data_url(text: str, width: int, height: int) -> np.ndarray:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the mask data URL is not valid base64") from None
    return decode_mask_png(data, width, height)


def parse_box(value: Any, width: int, height: int, what: str = "region") -> tuple[int, ...]:
    """[x, y, w, h] in pixels, entirely inside the image, with w and h > 0."""
    if not (
        isinstance(value, list | tuple)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) for v in value)
    ):
        raise BadRequest(f"{what} must be [x, y, w, h] in pixels")
    x, y, w, h = (round(v) for v in value)
    if w <= 0 or h <= 0:
        raise BadRequest(f"{what} must have a positive width and height")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise BadRequest(f"{what} {[x, y, w, h]} is outside the {width}x{height} image")
    return x, y, w, h


def box_mask(box: tuple[int, ...], width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    x, y, w, h = box
    mask[y : y + h, x : x + w] = True
    return mask


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A 1-bit PNG (black and white): small, and quick to write on the request path."""
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(
        out, format="PNG", compress_level=1
    )
    return out.getvalue()
