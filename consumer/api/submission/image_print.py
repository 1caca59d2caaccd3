"""The print of an uploaded start image (`consumer.core.similar.ImagePrint`): its SHA-256 (already taken while it was
spooled), its perceptual hash (imagehash's `phash`) and the mean colours of its quarters, for the similar-video
fallback.

Only an image that passed `check_upload` (allowed type, pixel and decoded-byte limits, read from its header) is
decoded, and only as far as the print needs: JPEG's draft mode decodes at 1/8 scale at most, and the hash needs
32 x 32 grey levels. Other formats decode whole, so an image of more than `IN_PROCESS_BYTES` decoded is printed in a
child process (`python -m consumer.api.submission.image_print`, fed the spooled file through a pipe, under the
start-image sandbox's limits): the job API's memory never holds a large decoded image, whatever is uploaded at once.
Blocking (decoding, or waiting for the child): run it off the event loop.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from typing import IO, cast

import imagehash
from PIL import Image

from consumer.api.submission.uploads import SpooledImage
from consumer.core.similar import ImagePrint
from consumer.images.decoding import ALLOWED_FORMATS
from consumer.images.sandbox import PACKAGE_PARENT, child_environment, limit_resources

__all__ = ["IN_PROCESS_BYTES", "image_print"]

IN_PROCESS_BYTES = 4 << 20
"""Decoded bytes (from the header) up to which an image other than a JPEG is printed in the API's own process."""
_DRAFT = (64, 64)  # the smallest size draft mode may decode to: more than phash's 32 x 32


def image_print(image: SpooledImage, *, memory_bytes: int, cpu_s: int) -> ImagePrint:
    """Raises OSError or ValueError when the image cannot be decoded after all (the caller goes on without it). A child
    may add `memory_bytes` of memory and use `cpu_s` of CPU, as a worker's start-image decode
    (`VIDGEN_IMAGE_DECODE_MEMORY_BYTES`, `VIDGEN_IMAGE_DECODE_CPU_S`)."""
    image.file.seek(0)
    with Image.open(image.file, formats=ALLOWED_FORMATS) as opened:
        width, height = opened.size
        if opened.format == "JPEG" or width * height * len(opened.getbands()) <= IN_PROCESS_BYTES:
            phash, colors = _print(opened)
            return ImagePrint(image.sha256, phash, colors)
    return ImagePrint(image.sha256, *_print_in_child(image, memory_bytes=memory_bytes, cpu_s=cpu_s))


def _print_in_child(image: SpooledImage, *, memory_bytes: int, cpu_s: int) -> tuple[int, bytes]:
    """The print computed by a child fed the file through a pipe, a MiB at a time."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, numbers only
        [sys.executable, "-E", "-s", "-m", __name__, str(memory_bytes), str(cpu_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=PACKAGE_PARENT,  # the child imports this very copy of `consumer`
        env=child_environment(),  # nothing of the API's environment (it holds credentials)
    )
    pipe = cast("IO[bytes]", child.stdin)  # a pipe: stdin=PIPE
    try:
        image.file.seek(0)
        with contextlib.suppress(BrokenPipeError):  # a child that gave up reading: its status says why
            while chunk := image.file.read(1 << 20):
                pipe.write(chunk)
        output, _ = child.communicate(timeout=2 * cpu_s + 5)
    except subprocess.TimeoutExpired as exc:
        raise ValueError("printing the image in a child took too long") from exc
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise ValueError(f"printing the image in a child failed (status {child.returncode})")
    answer = json.loads(output)
    return int(answer["phash"]), bytes.fromhex(answer["colors"])


def _print(opened: Image.Image) -> tuple[int, bytes]:
    """The perceptual hash and the quarters' mean colours of an opened image."""
    opened.draft("RGB", _DRAFT)
    rgb = opened.convert("RGB")
    phash = int(str(imagehash.phash(rgb)), 16)
    quarters = rgb.resize((2, 2), Image.Resampling.BOX)
    colors = bytes(channel for y in range(2) for x in range(2) for channel in _rgb(quarters.getpixel((x, y))))
    return phash, colors


def _rgb(pixel: object) -> tuple[int, int, int]:
    if not isinstance(pixel, tuple) or len(pixel) != 3:  # an RGB image's pixel is always one
        raise ValueError("not an RGB pixel")
    return int(pixel[0]), int(pixel[1]), int(pixel[2])


def main(argv: list[str]) -> int:
    """The child: limits first, then the image from stdin, its print as one JSON line on stdout."""
    memory_bytes, cpu_s = map(int, argv)
    limit_resources(memory_bytes, cpu_s)
    with Image.open(io.BytesIO(sys.stdin.buffer.read()), formats=ALLOWED_FORMATS) as opened:
        phash, colors = _print(opened)
    sys.stdout.write(json.dumps({"phash": phash, "colors": colors.hex()}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
