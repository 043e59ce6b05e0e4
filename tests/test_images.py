"""Image intake: formats, broken files, decompression bombs, orientation and fidelity.

Unit tests call ``normalize_image`` directly; the end-to-end tests upload through
``POST /api/sessions`` and read the stored base back from ``/blobs/{id}``.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from proofroom.server.images import normalize_image
from proofroom.shared.errors import (
    InvalidImage,
    PayloadTooLarge,
    UnsupportedMediaType,
)

from .helpers import ADMIN_TOKEN, RunningServer, run_server

MAX_PIXELS = 1_000_000
EXIF_ORIENTATION = 0x0112


# -- building images ----------------------------------------------------------------------


def noise(width: int = 32, height: int = 24, mode: str = "RGB") -> Image.Image:
    """A deterministic image with distinct neighbouring pixels (so no codec can cheat)."""
    seed = Image.effect_noise((width, height), 80)
    bands = [seed, seed.rotate(90, expand=False), seed.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    rgb = Image.merge("RGB", bands)
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize((width, height))
        rgba = rgb.copy()
        rgba.putalpha(alpha)
        return rgba
    return rgb.convert(mode)


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG (correct CRCs) whose IHDR claims ``width`` x ``height``.

    Its IDAT holds a single row, so decoding it would fail as truncated: getting
    PayloadTooLarge rather than InvalidImage shows the size was checked before decoding.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    row = b"\x00" + b"\x00" * 3 * min(width, 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(row))
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real (small) baseline JPEG with its SOF0 frame header patched to claim another size."""
    data = bytearray(encode(noise(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def oriented_jpeg() -> bytes:
    """A 40x20 JPEG, left half red and right half blue, tagged EXIF Orientation=6."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return encode(img, "JPEG", exif=exif, quality=95)


def pixel(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = img.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def near(value: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 8 for a, b in zip(value[:3], expected, strict=True))


# -- accepted formats ---------------------------------------------------------------------


def test_png_is_accepted_and_its_pixels_are_kept() -> None:
    source = noise(32, 24)
    result = normalize_image(encode(source, "PNG"), max_pixels=MAX_PIXELS)
    assert (result.width, result.height, result.mode) == (32, 24, "RGB")
    out = decode(result.png)
    assert out.format == "PNG"
    assert out.size == (32, 24)
    assert out.convert("RGB").tobytes() == source.tobytes()


def test_jpeg_is_accepted_as_its_decoded_pixels() -> None:
    data = encode(noise(32, 24), "JPEG", quality=90)
    result = normalize_image(data, max_pixels=MAX_PIXELS)
    assert (result.width, result.height) == (32, 24)
    out = decode(result.png)
    assert out.format == "PNG"
    assert out.convert("RGB").tobytes() == decode(data).convert("RGB").tobytes()


def test_lossless_webp_is_accepted_with_identical_pixels() -> None:
    source = noise(32, 24)
    result = normalize_image(encode(source, "WEBP", lossless=True), max_pixels=MAX_PIXELS)
    assert (result.width, result.height) == (32, 24)
    out = decode(result.png)
    assert out.format == "PNG"
    assert out.convert("RGB").tobytes() == source.tobytes()


def test_lossy_webp_is_accepted() -> None:
    result = normalize_image(encode(noise(30, 20), "WEBP", quality=70), max_pixels=MAX_PIXELS)
    assert (result.width, result.height) == (30, 20)
    assert decode(result.png).format == "PNG"


def test_rgba_png_keeps_its_alpha() -> None:
    source = noise(32, 24, "RGBA")
    assert len(set(source.getchannel("A").tobytes())) > 10
    result = normalize_image(encode(source, "PNG"), max_pixels=MAX_PIXELS)
    assert result.mode == "RGBA"
    out = decode(result.png)
    assert out.mode == "RGBA"
    assert out.tobytes() == source.tobytes()


def test_palette_png_with_transparency_keeps_it() -> None:
    source = Image.new("P", (8, 4), 0)
    source.putpalette([255, 0, 0, 0, 255, 0])
    source.paste(1, (4, 0, 8, 4))
    data = encode(source, "PNG", transparency=0)
    result = normalize_image(data, max_pixels=MAX_PIXELS)
    out = decode(result.png).convert("RGBA")
    assert pixel(out, (0, 0))[3] == 0
    assert pixel(out, (6, 2)) == (0, 255, 0, 255)


def test_image_at_exactly_the_pixel_limit_is_accepted() -> None:
    result = normalize_image(encode(noise(100, 100), "PNG"), max_pixels=10_000)
    assert (result.width, result.height) == (100, 100)


# -- refused formats and non-images -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_unsupported(fmt: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        normalize_image(encode(noise(16, 16), fmt), max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a text file\n" * 20, os.urandom(4096), b"<svg xmlns='x'></svg>"],
    ids=["text", "random", "svg"],
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        normalize_image(data, max_pixels=MAX_PIXELS)


def test_empty_file_is_invalid_with_a_clear_message() -> None:
    with pytest.raises(InvalidImage) as info:
        normalize_image(b"", max_pixels=MAX_PIXELS)
    assert "empty" in info.value.message


def test_png_claiming_zero_width_is_refused() -> None:
    with pytest.raises((InvalidImage, UnsupportedMediaType)) as info:
        normalize_image(png_claiming(0, 10), max_pixels=MAX_PIXELS)
    assert info.value.message


# -- truncated and broken files -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_file_truncated_in_its_pixel_data_is_invalid(fmt: str) -> None:
    data = encode(noise(64, 48), fmt)
    with pytest.raises(InvalidImage):
        normalize_image(data[: len(data) * 2 // 3], max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("fmt", "cut"),
    [("PNG", 20), ("JPEG", 30), ("JPEG", 200), ("WEBP", 40), ("WEBP", -10)],
    ids=["png-in-IHDR", "jpeg-in-header", "jpeg-in-tables", "webp-in-header", "webp-in-data"],
)
def test_file_truncated_in_its_header_is_invalid(fmt: str, cut: int) -> None:
    """A recognisable PNG/JPEG/WebP cut short is a broken upload (400), not a server error."""
    data = encode(noise(64, 48), fmt)
    with pytest.raises(InvalidImage):
        normalize_image(data[:cut], max_pixels=MAX_PIXELS)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("PNG", {}), ("JPEG", {}), ("WEBP", {}), ("WEBP", {"lossless": True})],
    ids=["png", "jpeg", "webp", "webp-lossless"],
)
def test_every_truncation_is_a_client_error(fmt: str, params: dict[str, Any]) -> None:
    """Whatever byte an upload is cut at, the result is a 4xx ProofroomError or a valid image."""
    data = encode(noise(16, 12), fmt, **params)
    escaped: dict[int, str] = {}
    for cut in range(1, len(data)):
        try:
            result = normalize_image(data[:cut], max_pixels=MAX_PIXELS)
        except (InvalidImage, UnsupportedMediaType):
            continue
        except Exception as exc:  # collected, to report every escaping cut at once
            escaped[cut] = f"{type(exc).__name__}: {exc}"
            continue
        assert (result.width, result.height) == (16, 12)
    assert not escaped, (
        f"{len(escaped)} of {len(data) - 1} cuts escaped, e.g. {next(iter(escaped.items()))}"
    )


# -- decompression bombs ------------------------------------------------------------------


def test_png_claiming_ten_billion_pixels_is_too_large() -> None:
    data = png_claiming(100_000, 100_000)
    assert len(data) < 200
    with pytest.raises(PayloadTooLarge) as info:
        normalize_image(data, max_pixels=50_000_000)
    assert info.value.status == 413


def test_png_just_above_the_pixel_limit_is_too_large_before_decoding() -> None:
    # 101 x 100 = 10_100 > 10_000. The IDAT is short: decoding would raise InvalidImage.
    with pytest.raises(PayloadTooLarge) as info:
        normalize_image(png_claiming(101, 100), max_pixels=10_000)
    assert "10000" in info.value.message or "10,000" in info.value.message


def test_real_png_just_above_the_pixel_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        normalize_image(encode(noise(101, 100), "PNG"), max_pixels=10_000)


@pytest.mark.parametrize(("width", "height"), [(65_000, 65_000), (101, 100)])
def test_jpeg_claiming_too_many_pixels_is_too_large(width: int, height: int) -> None:
    with pytest.raises(PayloadTooLarge):
        normalize_image(jpeg_claiming(width, height), max_pixels=10_000)


# -- orientation ----------------------------------------------------------------------------


def test_exif_orientation_is_applied() -> None:
    result = normalize_image(oriented_jpeg(), max_pixels=MAX_PIXELS)
    assert (result.width, result.height) == (20, 40)
    out = decode(result.png).convert("RGB")
    assert out.size == (20, 40)
    # Orientation 6 = rotate 90 degrees clockwise to display: the left (red) half is on top.
    assert near(pixel(out, (10, 5)), (255, 0, 0))
    assert near(pixel(out, (10, 35)), (0, 0, 255))
    # The output carries no orientation a viewer would apply a second time.
    assert decode(result.png).getexif().get(EXIF_ORIENTATION, 1) == 1


# -- end to end -----------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    if code is not None:
        assert body["error"]["code"] == code


async def upload(
    server: RunningServer, data: bytes, filename: str = "upload.bin"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post(
            "/api/sessions",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            files={"image": (filename, data)},
            data={"title": "upload"},
        )


async def stored_base(server: RunningServer, created: dict[str, Any]) -> bytes:
    blob = await server.admin.blob(created["base"])
    assert hashlib.sha256(blob).hexdigest() == created["base"]
    return blob


async def test_upload_stores_a_png_with_the_same_pixels(server: RunningServer) -> None:
    source = noise(64, 48)
    created = await server.admin.create_session(encode(source, "PNG"), title="pixels")
    assert (created["width"], created["height"]) == (64, 48)
    out = decode(await stored_base(server, created))
    assert out.format == "PNG"
    assert out.size == (64, 48)
    assert out.convert("RGB").tobytes() == source.tobytes()


async def test_upload_keeps_alpha(server: RunningServer) -> None:
    source = noise(32, 24, "RGBA")
    created = await server.admin.create_session(encode(source, "PNG"))
    out = decode(await stored_base(server, created))
    assert out.mode == "RGBA"
    assert out.tobytes() == source.tobytes()


async def test_upload_applies_exif_orientation(server: RunningServer) -> None:
    created = await server.admin.create_session(oriented_jpeg(), filename="photo.jpg")
    assert (created["width"], created["height"]) == (20, 40)
    out = decode(await stored_base(server, created)).convert("RGB")
    assert out.size == (20, 40)
    assert near(pixel(out, (10, 5)), (255, 0, 0))
    assert near(pixel(out, (10, 35)), (0, 0, 255))


@pytest.mark.parametrize(
    ("fmt", "params"), [("JPEG", {}), ("WEBP", {"lossless": True})], ids=["jpeg", "webp"]
)
async def test_upload_of_jpeg_and_webp_is_accepted(
    server: RunningServer, fmt: str, params: dict[str, Any]
) -> None:
    data = encode(noise(40, 30), fmt, **params)
    created = await server.admin.create_session(data, filename=f"image.{fmt.lower()}")
    assert (created["width"], created["height"]) == (40, 30)
    out = decode(await stored_base(server, created))
    assert out.format == "PNG"
    assert out.convert("RGB").tobytes() == decode(data).convert("RGB").tobytes()


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
async def test_upload_of_other_formats_is_415(server: RunningServer, fmt: str) -> None:
    assert_error(await upload(server, encode(noise(16, 16), fmt)), 415, "unsupported_media_type")


async def test_upload_of_text_is_415(server: RunningServer) -> None:
    assert_error(await upload(server, b"just some text\n" * 10, "notes.txt"), 415)


async def test_upload_of_an_empty_file_is_refused_clearly(server: RunningServer) -> None:
    for data in (b"", png_claiming(0, 10), png_claiming(10, 0)):
        response = await upload(server, data, "empty.png")
        assert response.status_code in (400, 415), response.text
        assert_error(response, response.status_code)
    assert await server.admin.list_sessions() == []


@pytest.mark.parametrize(
    ("fmt", "cut"),
    [("PNG", 0.5), ("JPEG", 0.5), ("PNG", 20), ("JPEG", 30), ("WEBP", 40)],
    ids=["png-data", "jpeg-data", "png-header", "jpeg-header", "webp"],
)
async def test_upload_of_a_truncated_image_is_400(
    server: RunningServer, fmt: str, cut: float
) -> None:
    data = encode(noise(64, 48), fmt)
    end = int(len(data) * cut) if isinstance(cut, float) else cut
    assert_error(await upload(server, data[:end]), 400, "invalid_image")


async def test_upload_of_a_decompression_bomb_is_413(server: RunningServer) -> None:
    assert_error(await upload(server, png_claiming(100_000, 100_000), "bomb.png"), 413)
    # Nothing was stored: the admin's list is still empty.
    assert await server.admin.list_sessions() == []


async def test_upload_just_above_the_configured_pixel_limit_is_413(tmp_path: Path) -> None:
    async with run_server(tmp_path / "data", max_image_pixels=10_000) as small:
        assert_error(await upload(small, png_claiming(101, 100), "wide.png"), 413, "too_large")
        assert_error(await upload(small, encode(noise(101, 100), "PNG")), 413, "too_large")
        created = await small.admin.create_session(encode(noise(100, 100), "PNG"))
        assert (created["width"], created["height"]) == (100, 100)
