"""decode_image and fit_image against real encoded images, hostile headers and arbitrary bytes."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from consumer.errors import ImageError, ImageTooLarge
from consumer.images.decoding import decode_image, fit_image
from tests.support import encoded

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG claiming `width` x `height` in a few dozen bytes: a decompression bomb's header."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload)
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _close(pixel: Any, expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_allowed_format_decodes_to_rgb(fmt: str) -> None:
    data = encoded(Image.new("RGB", (48, 32), RED), fmt)

    image = decode_image(data, max_pixels=10_000)

    assert (image.mode, image.size) == ("RGB", (48, 32))
    assert _close(image.getpixel((24, 16)), RED)


@pytest.mark.parametrize("fmt", ["PPM", "TGA", "PCX", "ICO"])
def test_real_images_outside_the_allowlist_are_refused(fmt: str) -> None:
    data = encoded(Image.new("RGB", (16, 16), RED), fmt)

    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=10_000)
    assert caught.value.code == "invalid_image"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"just some text, not a picture\n",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
        b"<!doctype html><html><body><img src=x.png></body></html>",  # what a 'photo.png' link often serves
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing after it
    ],
    ids=["empty", "text", "pdf", "html", "png-signature-only"],
)
def test_non_images_raise_invalid_image(data: bytes) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(data, max_pixels=10_000)
    assert caught.value.code == "invalid_image"
    assert not isinstance(caught.value, ImageTooLarge)


def test_truncated_jpeg_is_invalid() -> None:
    data = encoded(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG", quality=90)

    with pytest.raises(ImageError) as caught:
        decode_image(data[: len(data) // 2], max_pixels=10_000)
    assert caught.value.code == "invalid_image"


@pytest.mark.parametrize(
    ("data", "max_pixels"),
    [
        (_png_header(20_000, 20_000), 40_000_000),  # Pillow's own guard fires while parsing the header
        (_png_header(5_000, 5_000), 1_000_000),  # under Pillow's guard, over ours
        (encoded(Image.new("RGB", (64, 64)), "PNG"), 4_000),  # a real tiny image over a tiny limit
    ],
    ids=["20000x20000-header", "5000x5000-header", "64x64-over-4000"],
)
def test_too_many_pixels_is_refused_before_decoding(data: bytes, max_pixels: int) -> None:
    limit_before = Image.MAX_IMAGE_PIXELS

    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=max_pixels)

    assert caught.value.code == "image_too_large"
    assert limit_before == Image.MAX_IMAGE_PIXELS  # global Pillow state untouched


def test_alpha_is_flattened_onto_white() -> None:
    source = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    source.putpixel((1, 0), (*RED, 255))
    source.putpixel((2, 0), (*RED, 128))

    image = decode_image(encoded(source, "PNG"), max_pixels=100)

    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((1, 0)) == RED
    assert _close(image.getpixel((2, 0)), (255, 127, 127), tolerance=2)


def test_palette_transparency_is_flattened_and_gif_yields_its_first_frame() -> None:
    first = Image.new("P", (8, 8), 0)
    first.putpalette([*RED, *BLUE, *WHITE])
    second = first.copy()
    second.paste(1, (0, 0, 8, 8))
    first.putpixel((0, 0), 2)
    data = encoded(first, "GIF", save_all=True, append_images=[second], transparency=2, duration=100)

    image = decode_image(data, max_pixels=100)

    assert image.mode == "RGB"
    assert image.getpixel((4, 4)) == RED  # frame one, not frame two's blue
    assert image.getpixel((0, 0)) == WHITE


def test_exif_orientation_is_applied_and_all_metadata_dropped() -> None:
    source = Image.new("RGB", (40, 20), BLUE)
    source.paste(RED, (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    exif[0x010F] = "SecretCam"  # Make
    exif[0x013B] = "Jane Doe"  # Artist
    data = encoded(source, "JPEG", exif=exif, quality=95, comment=b"internal note")

    image = decode_image(data, max_pixels=10_000)

    assert image.size == (20, 40)
    assert _close(image.getpixel((10, 5)), RED)  # the stored left edge is now the top
    assert _close(image.getpixel((10, 35)), BLUE)
    assert image.info == {}
    assert len(image.getexif()) == 0


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    data = encoded(Image.new("I;16", (4, 4), 32_768), "PNG")

    image = decode_image(data, max_pixels=100)

    assert _close(image.getpixel((0, 0)), (128, 128, 128), tolerance=1)


@pytest.mark.parametrize(
    ("source_size", "frame"),
    [((400, 200), (256, 256)), ((200, 400), (320, 180)), ((1000, 750), (1024, 576)), ((7, 5), (64, 48))],
    ids=["landscape-to-square", "portrait-to-landscape", "4:3-to-16:9", "upscale"],
)
def test_fit_image_returns_exactly_the_frame_size(source_size: tuple[int, int], frame: tuple[int, int]) -> None:
    fitted = fit_image(Image.new("RGB", source_size, RED), *frame)

    assert fitted.size == frame
    assert fitted.mode == "RGB"


def test_fit_image_keeps_the_center_and_crops_the_overflow() -> None:
    source = Image.new("RGB", (300, 100), BLUE)
    source.paste(RED, (100, 0, 200, 100))  # the middle third

    fitted = fit_image(source, 50, 50)

    for point in [(2, 2), (25, 25), (47, 47)]:  # the filter may blend the outermost pixel with its neighbours
        assert _close(fitted.getpixel(point), RED)


def test_fit_image_rejects_an_empty_frame() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_image(Image.new("RGB", (4, 4)), 0, 4)


_SEEDS = [
    encoded(Image.effect_noise((12, 9), 40).convert(mode), fmt)
    for fmt, mode in [
        ("JPEG", "RGB"),
        ("PNG", "RGBA"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("TIFF", "RGB"),
        ("PNG", "L"),
    ]
]


@st.composite
def _mutated_images(draw: st.DrawFn) -> bytes:
    """A valid small image with a few bytes overwritten and maybe cut short: reaches the decoders."""
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512) | _mutated_images())
def test_arbitrary_bytes_raise_only_our_errors(data: bytes) -> None:
    try:
        image = decode_image(data, max_pixels=4_096)
    except (ImageError, ImageTooLarge):
        return
    assert image.mode == "RGB"
    assert image.width * image.height <= 4_096
