"""Image intake: a whitelist of formats, a pixel limit checked before decoding, EXIF applied."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from ..shared.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})


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
