"""Image intake: a whitelist of formats, a pixel limit checked before decoding, EXIF applied."""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from PIL import Image, ImageOps, UnidentifiedImageError

from ..shared.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
T = TypeVar("T")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_declared_size(data: bytes) -> tuple[int, int] | None:
    """The width and height a PNG's IHDR claims, read without Pillow; None if not a PNG.

    Pillow's own bomb check raises (or, between its two thresholds, only warns) at open,
    with a message about its limit rather than ours: reading the 24 header bytes first lets
    a caller refuse a 30000x30000 claim in its own words before any decoder is involved.
    """
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@dataclass(frozen=True)
class NormalizedImage:
    """An accepted image, re-encoded as PNG with its orientation applied."""

    png: bytes
    width: int
    height: int
    mode: str


def normalize_image(data: bytes, *, max_pixels: int) -> NormalizedImage:
    """Validate an uploaded image and return it as a canonical PNG.

    The header is read first and the pixel count checked before any pixel is decoded,
    so a small file that claims huge dimensions costs nothing.
    """
    if not data:
        raise InvalidImage("the image is empty")
    declared = png_declared_size(data)
    if declared is not None and declared[0] * declared[1] > max_pixels:
        # A PNG bomb is refused before Pillow's own check can raise or warn (warnings
        # filters are process-wide state, not safe to juggle from image threads).
        raise PayloadTooLarge(
            f"the image is {declared[0]}x{declared[1]}, more than the {max_pixels} pixel limit"
        )
    try:
        with warnings.catch_warnings():
            # Our own limit below replaces Pillow's DecompressionBombWarning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except UnidentifiedImageError:
        raise UnsupportedMediaType("not a PNG, JPEG or WebP image") from None
    except Image.DecompressionBombError:
        # Pillow's own ceiling (about 179 million pixels) fired before ours could.
        raise PayloadTooLarge("the image claims more pixels than this server accepts") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # A recognised format whose header is cut short or corrupt.
        raise InvalidImage(f"the image header could not be read: {exc}") from None
    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise InvalidImage("the image has no pixels")
        if width * height > max_pixels:
            raise PayloadTooLarge(
                f"the image is {width}x{height}, more than the {max_pixels} pixel limit"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
                oriented = ImageOps.exif_transpose(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"the image could not be decoded: {exc}") from None
        has_alpha = oriented.mode in ("RGBA", "LA", "PA") or "transparency" in oriented.info
        converted = oriented.convert("RGBA" if has_alpha else "RGB")
        out = io.BytesIO()
        converted.save(out, format="PNG", compress_level=6)
        return NormalizedImage(out.getvalue(), converted.width, converted.height, converted.mode)


#: The long side of a big picture's preview, drawn first while the full image loads. A
#: 4096x4096 PNG is tens of megabytes; its 1024-px JPEG is about a hundred kilobytes.
PREVIEW_SIDE = 1024


def downscaled_preview(data: bytes, *, side: int = PREVIEW_SIDE) -> bytes | None:
    """A JPEG at most ``side`` pixels on its long side; None if the image is no bigger.

    Only for blobs this server stored (already checked by :func:`normalize_image`).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS)) as img:
                if max(img.size) <= side:
                    return None
                img.draft("RGB", (side, side))  # JPEG: decode at a fraction of the size
                small = img.convert("RGB")
                small.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UnsupportedMediaType("that blob is not an image") from None
    out = io.BytesIO()
    small.save(out, format="JPEG", quality=85)
    return out.getvalue()


#: Image jobs (decode, re-encode) running at once per server. Pillow releases the GIL while
#: it decodes and encodes. Measured on the development machine with the loop sampling its
#: own lag every millisecond while a thread worked on a 40 MP picture: PNG decode 0.6 s and
#: JPEG decode 0.2 s with the loop's worst gap 1 ms (after 20-50 ms at the thread's start:
#: Pillow allocating the image), PNG re-encode 15-18 s with gaps mostly under 10 ms, a few of
#: 30-60 ms on the shared machine. So the limit is for CPU and memory (a 40 MP RGBA image is
#: 160 MB decoded), not for the loop.
IMAGE_THREADS = 2
_image_limiter: RunVar[anyio.CapacityLimiter] = RunVar("proofroom_image_limiter")


def image_limiter() -> anyio.CapacityLimiter:
    """The capacity limiter that every image job of this event loop shares."""
    try:
        return _image_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(IMAGE_THREADS)
        _image_limiter.set(limiter)
        return limiter


async def run_image_job(fn: Callable[[], T]) -> T:
    """Run ``fn`` (decoding, encoding, compositing pixels) in a worker thread, never on the loop."""
    return await anyio.to_thread.run_sync(fn, limiter=image_limiter())


async def normalize_image_in_thread(data: bytes, *, max_pixels: int) -> NormalizedImage:
    """:func:`normalize_image` in a worker thread: the event loop keeps serving every room."""
    return await run_image_job(lambda: normalize_image(data, max_pixels=max_pixels))
