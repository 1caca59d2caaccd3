"""A start image sent with a submission: checked from its bytes and header before anything is stored.

The type is sniffed from the bytes against the worker's allowlist (never the file name or Content-Type), the size
against the worker's byte limit and the header's dimensions against its pixel and decoded-byte limits, without
decoding a single pixel (the worker decodes it later, in its sandbox). The object key is content-addressed in the
tenant's own upload folder, the only place in the output bucket a worker reads that tenant's start images from.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from consumer.core.keys import upload_key
from consumer.errors import ImageError, ImageTooLarge
from consumer.images.decoding import ALLOWED_FORMATS, check_size, check_tiff_directory

__all__ = ["CheckedImage", "check_upload"]

_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tiff"}


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    content_type: str
    key: str  # where it goes in the output bucket


def check_upload(
    data: bytes, *, tenant_id: str, key_prefix: str, max_bytes: int, max_pixels: int, max_decoded_bytes: int
) -> CheckedImage:
    """Raises `ImageTooLarge` or `ImageError` (both name the field `image`). CPU-light: headers only."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes}", field="image")
    if not data:
        raise ImageError("image is empty", field="image")
    try:
        check_tiff_directory(data)  # before Pillow parses a TIFF directory at all
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            image_format = image.format or ""
            check_size(image, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge("image has too many pixels", field="image") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"image is not a {'/'.join(ALLOWED_FORMATS)} image", code="unsupported_image_type", field="image"
        ) from exc
    except (ImageError, ImageTooLarge) as exc:
        exc.field = "image"
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what Pillow raises on a broken header
        raise ImageError("image header could not be read", field="image") from exc
    # Known suffixes keep the key readable; TIFF has none in the upload rules, so it goes without one.
    name = "image" + _SUFFIX.get(image_format, "")
    return CheckedImage(
        data=data,
        content_type=Image.MIME.get(image_format, "application/octet-stream"),
        key=upload_key(data, name, prefix=key_prefix, tenant_id=tenant_id),
    )
