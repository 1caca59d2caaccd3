"""What a start-image decode may cost, checked before anything is decoded: TIFF structure (tags, strips, values, EXIF
in other formats) and decoded bytes. The hostile files are generated here; the decode in its limited child process is
in tests/integration/test_image_sandbox.py."""

from __future__ import annotations

import struct
import time

import pytest
from PIL import Image

from consumer.errors import ImageTooLarge
from consumer.images.decoding import TIFF_MAX_STRIPS, check_tiff_directory, decode_image
from tests.support import DEFAULT_DECODE_LIMITS, encoded

MIB = 1 << 20
RATIONAL, LONG, SHORT = 5, 4, 3
X_RESOLUTION = 282  # a tag Pillow knows: it turns every value into a Python object when it reads the tag


def _tiff(
    width: int,
    height: int,
    *,
    strips: int = 1,
    extra: tuple[tuple[int, int, int, bytes], ...] = (),
) -> bytes:
    """A little-endian TIFF of 8-bit grey, `strips` strips of `height / strips` rows all pointing at the same
    zero bytes, plus `extra` (tag, type, count, value bytes) entries."""
    rows = height // strips
    pixels = b"\0" * (width * rows)
    entries = [
        (256, LONG, 1, struct.pack("<I", width)),
        (257, LONG, 1, struct.pack("<I", height)),
        (258, SHORT, 1, struct.pack("<H", 8)),
        (259, SHORT, 1, struct.pack("<H", 1)),  # no compression
        (262, SHORT, 1, struct.pack("<H", 1)),  # black is zero
        (273, LONG, strips, struct.pack("<I", 8) * strips),  # the pixels follow the header
        (277, SHORT, 1, struct.pack("<H", 1)),
        (278, LONG, 1, struct.pack("<I", rows)),
        (279, LONG, strips, struct.pack("<I", len(pixels)) * strips),
        *extra,
    ]
    out = bytearray(b"II*\0\0\0\0\0" + pixels)
    table = []
    for tag, kind, count, value in sorted(entries):
        if len(value) <= 4:
            table.append(struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0"))
            continue
        out += b"\0" * (len(out) % 2)
        table.append(struct.pack("<HHII", tag, kind, count, len(out)))
        out += value
    out += b"\0" * (len(out) % 2)
    out[4:8] = struct.pack("<I", len(out))
    out += struct.pack("<H", len(table)) + b"".join(table) + b"\0\0\0\0"
    return bytes(out)


def test_a_tiff_tag_with_millions_of_values_is_refused_before_pillow_reads_it() -> None:
    values = 2_400_000
    data = _tiff(8, 8, extra=((X_RESOLUTION, RATIONAL, values, b"\1\0\0\0\1\0\0\0" * values),))
    assert len(data) < 20 * MIB  # under the download limit

    started = time.monotonic()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=DEFAULT_DECODE_LIMITS.max_pixels)

    assert time.monotonic() - started < 5  # was 17 s and 0.56 GiB, in Pillow's tag parser
    assert caught.value.code == "image_too_large"
    assert caught.value.message == "TIFF directory holds 2400009 numeric values, over the limit of 139264"


def test_a_tiff_of_millions_of_strips_is_refused_before_pillow_lists_them() -> None:
    strips = 2_350_000
    data = _tiff(16, strips, strips=strips)  # 37.6 megapixels, one row per strip
    assert len(data) < 20 * MIB

    started = time.monotonic()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=DEFAULT_DECODE_LIMITS.max_pixels)

    assert time.monotonic() - started < 5  # was 35 s of CPU and 0.8 GiB
    assert caught.value.message == "TIFF image has 2350000 strips, over the limit of 65536"


def test_exif_inside_another_format_is_checked_before_it_is_parsed() -> None:
    values = 300_000
    exif = _tiff(1, 1, extra=((X_RESOLUTION, RATIONAL, values, b"\1\0\0\0\1\0\0\0" * values),))
    data = encoded(Image.new("RGB", (8, 8)), "PNG", exif=exif)

    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=DEFAULT_DECODE_LIMITS.max_pixels)

    assert caught.value.message == "EXIF directory holds 300009 numeric values, over the limit of 139264"


def test_the_strip_limit_is_exact_and_its_offsets_and_sizes_fit_the_value_limit() -> None:
    check_tiff_directory(_tiff(16, TIFF_MAX_STRIPS, strips=TIFF_MAX_STRIPS))

    with pytest.raises(ImageTooLarge):
        check_tiff_directory(_tiff(16, TIFF_MAX_STRIPS + 1, strips=TIFF_MAX_STRIPS + 1))


def test_ordinary_tiffs_pass_the_structure_checks() -> None:
    strips = 6_320  # one row per strip at the 40-megapixel limit's height
    image = decode_image(_tiff(16, strips, strips=strips), max_pixels=DEFAULT_DECODE_LIMITS.max_pixels)

    assert (image.mode, image.size) == ("RGB", (16, strips))


@pytest.mark.parametrize(
    ("mode", "decoded"),
    [("RGBA", 40_000), ("RGB", 30_000), ("I;16", 20_000), ("L", 10_000)],
)
def test_decoded_bytes_count_bands_and_bytes_per_sample(mode: str, decoded: int) -> None:
    data = encoded(Image.new(mode, (100, 100)), "PNG")

    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=10_000, max_decoded_bytes=decoded - 1)
    image = decode_image(data, max_pixels=10_000, max_decoded_bytes=decoded)

    assert caught.value.message == (
        f"image is 100x100 in mode {mode}: {decoded} bytes decoded, over the {decoded - 1}-byte limit"
    )
    assert image.size == (100, 100)
