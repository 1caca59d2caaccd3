"""The print of an uploaded start image (`consumer.core.similar.ImagePrint`): its SHA-256 (already taken while it was
spooled), its perceptual hash (imagehash's `phash`) and the mean colours of its quarters, for the similar-video
fallback.

Only an image that passed `check_upload` (allowed type, pixel and decoded-byte limits, read from its header) is
decoded here, and only to a few pixels: JPEG's draft mode decodes at 1/8 scale at most, and the hash needs 32 x 32
grey levels. Blocking (decoding): run it off the event loop.
"""

from __future__ import annotations

import imagehash
from PIL import Image

from consumer.api.submission.uploads import SpooledImage
from consumer.core.similar import ImagePrint
from consumer.images.decoding import ALLOWED_FORMATS

__all__ = ["image_print"]

_DRAFT = (64, 64)  # the smallest size draft mode may decode to: more than phash's 32 x 32


def image_print(image: SpooledImage) -> ImagePrint:
    """Raises OSError or ValueError when the image cannot be decoded after all (the caller goes on without it)."""
    image.file.seek(0)
    with Image.open(image.file, formats=ALLOWED_FORMATS) as opened:
        opened.draft("RGB", _DRAFT)
        rgb = opened.convert("RGB")
    phash = int(str(imagehash.phash(rgb)), 16)
    quarters = rgb.resize((2, 2), Image.Resampling.BOX)
    colors = bytes(channel for y in range(2) for x in range(2) for channel in _rgb(quarters.getpixel((x, y))))
    return ImagePrint(image.sha256, phash, colors)


def _rgb(pixel: object) -> tuple[int, int, int]:
    if not isinstance(pixel, tuple) or len(pixel) != 3:  # an RGB image's pixel is always one
        raise ValueError("not an RGB pixel")
    return int(pixel[0]), int(pixel[1]), int(pixel[2])
