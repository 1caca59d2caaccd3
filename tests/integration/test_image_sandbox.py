"""A start-image decode in its child process, with hard memory and CPU limits, alone and inside a worker. The checks
made before decoding are unit-tested in tests/unit/test_decode_limits.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from consumer.core.keys import upload_key
from consumer.errors import ImageError, ImageTooLarge
from consumer.images.decoding import decode_image, fit_image
from consumer.images.sandbox import DecodeLimits, child_command, decode_in_sandbox
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from tests.support import DEFAULT_DECODE_LIMITS, KafkaClient, encoded, request_body

MIB = 1 << 20


@pytest.fixture(scope="module")
def zero_png() -> bytes:
    """6320x6320 black: 40 megapixels (the default limit) in ~115 KB. Decoding it takes ~0.3 GiB."""
    return encoded(Image.new("RGB", (6320, 6320)), "PNG")


def test_the_child_decodes_exactly_what_the_worker_would_and_imports_no_torch() -> None:
    source = Image.new("RGB", (90, 60), (0, 0, 255))
    source.paste((255, 0, 0), (0, 0, 45, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate for display
    data = encoded(source, "JPEG", exif=exif, quality=95)

    frame = decode_in_sandbox(data, 64, 48, DEFAULT_DECODE_LIMITS)
    imported = subprocess.run(  # the same command with the import log on
        [sys.executable, "-X", "importtime", *child_command(64, 48, DEFAULT_DECODE_LIMITS)[1:]],
        input=data,
        capture_output=True,
        check=True,
    ).stderr.decode()

    expected = fit_image(decode_image(data, max_pixels=DEFAULT_DECODE_LIMITS.max_pixels), 64, 48)
    assert (frame.mode, frame.size, frame.info) == ("RGB", (64, 48), {})
    assert frame.tobytes() == expected.tobytes()
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in imported.splitlines() if "|" in line}
    assert "PIL" in modules
    assert not modules & {"torch", "numpy", "diffusers", "transformers", "aiokafka", "botocore", "pydantic"}


def test_a_decode_over_the_memory_limit_is_stopped_and_answered_image_too_large(zero_png: bytes) -> None:
    tight = DecodeLimits(
        DEFAULT_DECODE_LIMITS.max_pixels, DEFAULT_DECODE_LIMITS.max_decoded_bytes, memory_bytes=64 * MIB, cpu_s=5
    )

    with pytest.raises(ImageTooLarge) as caught:
        decode_in_sandbox(zero_png, 256, 256, tight)

    assert caught.value.message == "decoding the image needs more than 64 MiB"


def test_a_decode_over_the_cpu_limit_is_stopped_and_answered_image_too_large() -> None:
    # 169 megapixels of RGB (under Pillow's own bomb limit): seconds of CPU to decode and fit on any machine. A
    # 10,000 x 10,000 greyscale image took just under the one-second limit on a quiet machine, so it was not reached.
    data = encoded(Image.new("RGB", (13_000, 13_000)), "PNG")
    slow = DecodeLimits(max_pixels=2 * 10**8, max_decoded_bytes=6 * 10**8, memory_bytes=2048 * MIB, cpu_s=1)

    with pytest.raises(ImageTooLarge) as caught:
        decode_in_sandbox(data, 256, 256, slow)

    assert caught.value.message == "decoding the image used more than 1 s of CPU"


def test_the_defaults_decode_a_large_ordinary_image(zero_png: bytes) -> None:
    frame = decode_in_sandbox(zero_png, 1024, 1024, DEFAULT_DECODE_LIMITS)

    assert frame.size == (1024, 1024)
    assert frame.getpixel((512, 512)) == (0, 0, 0)


def test_a_broken_image_is_still_invalid_image() -> None:
    with pytest.raises(ImageError) as caught:
        decode_in_sandbox(b"GIF89a not really", 64, 64, DEFAULT_DECODE_LIMITS)

    assert caught.value.code == "invalid_image"


@pytest.mark.timeout(120)
async def test_a_worker_refuses_a_start_image_over_its_decode_memory_and_goes_on(
    settings: Settings, kafka: KafkaClient, store: ObjectStore, start_worker, zero_png: bytes
) -> None:
    await start_worker(settings.model_copy(update={"image_decode_memory_bytes": 64 * MIB}))
    small = encoded(Image.new("RGB", (320, 240), (200, 30, 30)), "PNG")
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
