"""A start image sent with a submission: streamed to a temporary file while it arrives, then checked from its header
before anything is stored.

The part is never held in memory whole: it goes to an unnamed temporary file in chunks (at most `_FLUSH_BYTES`
buffered), hashed on the way and refused with 413 the moment it passes the worker's byte limit. The type is sniffed
from the bytes against the worker's allowlist (never the file name or Content-Type), the header's dimensions against
its pixel and decoded-byte limits, without decoding a single pixel (the worker decodes it later, in its sandbox). The
object key is content-addressed in the tenant's own upload folder, the only place in the output bucket a worker reads
that tenant's start images from; the object is uploaded from the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from aiohttp import BodyPartReader
from PIL import Image, UnidentifiedImageError

from consumer.core.keys import upload_key_of_digest
from consumer.errors import ApiFailure, ImageError, ImageTooLarge
from consumer.images.decoding import ALLOWED_FORMATS, check_size, check_tiff_directory

__all__ = ["IMAGE_FIELD", "CheckedImage", "SpooledImage", "check_upload", "spool_part"]

_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff"}
_FLUSH_BYTES = 1 << 20
IMAGE_FIELD = "input_reference"
"""The form part of the start image, as OpenAI's SDKs name it."""


@dataclass
class SpooledImage:
    """The image part as it arrived: an unnamed temporary file (gone once closed), its size and SHA-256."""

    file: BinaryIO
    size: int
    sha256: str

    def close(self) -> None:
        self.file.close()


@dataclass(frozen=True)
class CheckedImage:
    image: SpooledImage
    content_type: str
    key: str  # where it goes in the output bucket


async def spool_part(part: BodyPartReader, *, max_bytes: int) -> SpooledImage:
    """The part in a temporary file; ApiFailure 413 as soon as it is over `max_bytes` (nothing more is read)."""
    file = await asyncio.to_thread(tempfile.TemporaryFile)
    try:
        size, digest = await _copy(part, file, max_bytes=max_bytes)
    except BaseException:
        file.close()
        raise
    return SpooledImage(file=file, size=size, sha256=digest)


async def _copy(part: BodyPartReader, file: BinaryIO, *, max_bytes: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    pending = bytearray()
    size = 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > max_bytes:
            raise ApiFailure(413, "image_too_large", f"{IMAGE_FIELD} is over {max_bytes} bytes", field=IMAGE_FIELD)
        digest.update(chunk)
        pending += chunk
        if len(pending) >= _FLUSH_BYTES:
            await asyncio.to_thread(file.write, pending)
            pending.clear()
    await asyncio.to_thread(file.write, pending)
    return size, digest.hexdigest()


def check_upload(
    image: SpooledImage, *, tenant_id: str, key_prefix: str, max_pixels: int, max_decoded_bytes: int
) -> CheckedImage:
    """Raises `ImageTooLarge` or `ImageError` (both name the field `image`). Blocking (file reads) but CPU-light:
    headers only, read through a read-only map of the file."""
    if not image.size:
        raise ImageError(f"{IMAGE_FIELD} is empty", field=IMAGE_FIELD)
    image.file.flush()
    try:
        with mmap.mmap(image.file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            check_tiff_directory(data)  # before Pillow parses a TIFF directory at all
            image.file.seek(0)
            with Image.open(image.file, formats=ALLOWED_FORMATS) as opened:
                image_format = opened.format or ""
                check_size(opened, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"{IMAGE_FIELD} has too many pixels", field=IMAGE_FIELD) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{IMAGE_FIELD} is not a {'/'.join(ALLOWED_FORMATS)} image",
            code="unsupported_image_type",
            field=IMAGE_FIELD,
        ) from exc
    except (ImageError, ImageTooLarge) as exc:
        exc.field = IMAGE_FIELD
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what Pillow raises on a broken header
        raise ImageError(f"{IMAGE_FIELD} header could not be read", field=IMAGE_FIELD) from exc
    # Known suffixes keep the key readable; TIFF has none in the upload rules, so it goes without one.
    name = "image" + _SUFFIX.get(image_format, "")
    return CheckedImage(
        image=image,
        content_type=Image.MIME.get(image_format, "application/octet-stream"),
        key=upload_key_of_digest(image.sha256, name, prefix=key_prefix, tenant_id=tenant_id),
    )
