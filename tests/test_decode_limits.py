"""What a start-image decode may cost: TIFF structure and decoded bytes checked before decoding, and the decode
itself in a child process with hard memory and CPU limits. The hostile files are generated here."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time

import pytest
from PIL import Image

from consumer.core.keys import upload_key
from consumer.errors import ImageError, ImageTooLarge
from consumer.job.image_decoding import TIFF_MAX_STRIPS, check_tiff_directory, decode_image, fit_image
from consumer.job.image_sandbox import DecodeLimits, child_command, decode_in_sandbox
from consumer.settings import Settings
from consumer.storage import ObjectStore
from tests.conftest import KafkaClient, request_body

MIB = 1 << 20
DEFAULTS = DecodeLimits(
    max_pixels=Settings.model_fields["image_max_pixels"].default,
    max_decoded_bytes=Settings.model_fields["image_max_decoded_bytes"].default,
    memory_bytes=Settings.model_fields["image_decode_memory_bytes"].default,
    cpu_s=Settings.model_fields["image_decode_cpu_s"].default,
)
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


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zero_png() -> bytes:
    """6320x6320 black: 40 megapixels (the default limit) in ~115 KB. Decoding it takes ~0.3 GiB."""
    return _encode(Image.new("RGB", (6320, 6320)), "PNG")


def test_a_tiff_tag_with_millions_of_values_is_refused_before_pillow_reads_it() -> None:
    values = 2_400_000
    data = _tiff(8, 8, extra=((X_RESOLUTION, RATIONAL, values, b"\1\0\0\0\1\0\0\0" * values),))
    assert len(data) < 20 * MIB  # under the download limit

    started = time.monotonic()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=DEFAULTS.max_pixels)

    assert time.monotonic() - started < 5  # was 17 s and 0.56 GiB, in Pillow's tag parser
    assert caught.value.code == "image_too_large"
    assert caught.value.message == "TIFF directory holds 2400009 numeric values, over the limit of 139264"


def test_a_tiff_of_millions_of_strips_is_refused_before_pillow_lists_them() -> None:
    strips = 2_350_000
    data = _tiff(16, strips, strips=strips)  # 37.6 megapixels, one row per strip
    assert len(data) < 20 * MIB

    started = time.monotonic()
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=DEFAULTS.max_pixels)

    assert time.monotonic() - started < 5  # was 35 s of CPU and 0.8 GiB
    assert caught.value.message == "TIFF image has 2350000 strips, over the limit of 65536"


def test_exif_inside_another_format_is_checked_before_it_is_parsed() -> None:
    values = 300_000
    exif = _tiff(1, 1, extra=((X_RESOLUTION, RATIONAL, values, b"\1\0\0\0\1\0\0\0" * values),))
    data = _encode(Image.new("RGB", (8, 8)), "PNG", exif=exif)

    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=DEFAULTS.max_pixels)

    assert caught.value.message == "EXIF directory holds 300009 numeric values, over the limit of 139264"


def test_the_strip_limit_is_exact_and_its_offsets_and_sizes_fit_the_value_limit() -> None:
    check_tiff_directory(_tiff(16, TIFF_MAX_STRIPS, strips=TIFF_MAX_STRIPS))

    with pytest.raises(ImageTooLarge):
        check_tiff_directory(_tiff(16, TIFF_MAX_STRIPS + 1, strips=TIFF_MAX_STRIPS + 1))


def test_ordinary_tiffs_pass_the_structure_checks() -> None:
    strips = 6_320  # one row per strip at the 40-megapixel limit's height
    image = decode_image(_tiff(16, strips, strips=strips), max_pixels=DEFAULTS.max_pixels)

    assert (image.mode, image.size) == ("RGB", (16, strips))


@pytest.mark.parametrize(
    ("mode", "decoded"),
    [("RGBA", 40_000), ("RGB", 30_000), ("I;16", 20_000), ("L", 10_000)],
)
def test_decoded_bytes_count_bands_and_bytes_per_sample(mode: str, decoded: int) -> None:
    data = _encode(Image.new(mode, (100, 100)), "PNG")

    with pytest.raises(ImageTooLarge) as caught:
        decode_image(data, max_pixels=10_000, max_decoded_bytes=decoded - 1)
    image = decode_image(data, max_pixels=10_000, max_decoded_bytes=decoded)

    assert caught.value.message == (
        f"image is 100x100 in mode {mode}: {decoded} bytes decoded, over the {decoded - 1}-byte limit"
    )
    assert image.size == (100, 100)


def test_the_child_decodes_exactly_what_the_worker_would_and_imports_no_torch() -> None:
    source = Image.new("RGB", (90, 60), (0, 0, 255))
    source.paste((255, 0, 0), (0, 0, 45, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate for display
    data = _encode(source, "JPEG", exif=exif, quality=95)

    frame = decode_in_sandbox(data, 64, 48, DEFAULTS)
    imported = subprocess.run(  # the same command with the import log on
        [sys.executable, "-X", "importtime", *child_command(64, 48, DEFAULTS)[1:]],
        input=data,
        capture_output=True,
        check=True,
    ).stderr.decode()

    expected = fit_image(decode_image(data, max_pixels=DEFAULTS.max_pixels), 64, 48)
    assert (frame.mode, frame.size, frame.info) == ("RGB", (64, 48), {})
    assert frame.tobytes() == expected.tobytes()
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in imported.splitlines() if "|" in line}
    assert "PIL" in modules
    assert not modules & {"torch", "numpy", "diffusers", "transformers", "aiokafka", "botocore", "pydantic"}


def test_a_decode_over_the_memory_limit_is_stopped_and_answered_image_too_large(zero_png: bytes) -> None:
    tight = DecodeLimits(DEFAULTS.max_pixels, DEFAULTS.max_decoded_bytes, memory_bytes=64 * MIB, cpu_s=5)

    with pytest.raises(ImageTooLarge) as caught:
        decode_in_sandbox(zero_png, 256, 256, tight)

    assert caught.value.message == "decoding the image needs more than 64 MiB"


def test_a_decode_over_the_cpu_limit_is_stopped_and_answered_image_too_large() -> None:
    data = _encode(Image.new("L", (10_000, 10_000)), "PNG")  # ~2-3 s of CPU to decode and fit
    slow = DecodeLimits(max_pixels=10**8, max_decoded_bytes=10**8, memory_bytes=2048 * MIB, cpu_s=1)

    with pytest.raises(ImageTooLarge) as caught:
        decode_in_sandbox(data, 256, 256, slow)

    assert caught.value.message == "decoding the image used more than 1 s of CPU"


def test_the_defaults_decode_a_large_ordinary_image(zero_png: bytes) -> None:
    frame = decode_in_sandbox(zero_png, 1024, 1024, DEFAULTS)

    assert frame.size == (1024, 1024)
    assert frame.getpixel((512, 512)) == (0, 0, 0)


def test_a_broken_image_is_still_invalid_image() -> None:
    with pytest.raises(ImageError) as caught:
        decode_in_sandbox(b"GIF89a not really", 64, 64, DEFAULTS)

    assert caught.value.code == "invalid_image"


@pytest.mark.integration
async def test_a_worker_refuses_a_start_image_over_its_decode_memory_and_goes_on(
    settings: Settings, kafka: KafkaClient, store: ObjectStore, start_worker, zero_png: bytes
) -> None:
    await start_worker(settings.model_copy(update={"image_decode_memory_bytes": 64 * MIB}))
    small = _encode(Image.new("RGB", (320, 240), (200, 30, 30)), "PNG")
    urls = {}
    for name, data in (("bomb", zero_png), ("small", small)):
        key = upload_key(data, f"{name}.png", prefix=settings.s3_key_prefix, tenant_id="shop-1")
        await store.put(key, data, content_type="image/png", metadata={})
        urls[name] = f"s3://{settings.s3_bucket}/{key}"

    await kafka.send(request_body("bomb-1", image_url=urls["bomb"]))
    await kafka.send(request_body("small-1", image_url=urls["small"]))
    results = await kafka.results(2)

    bomb = results["bomb-1"]
    assert bomb.status == "rejected" and bomb.error is not None
    assert (bomb.error.code, bomb.error.retryable) == ("image_too_large", False)
    assert bomb.error.message == "decoding the image needs more than 64 MiB"
    assert results["small-1"].status == "completed"
