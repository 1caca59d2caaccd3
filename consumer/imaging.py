"""Safe decoding of an untrusted start image, and fitting it to the video frame.

Pure and CPU-bound: callers run it off the event loop (`asyncio.to_thread`). The format is sniffed from the
bytes against an allowlist (never from a file name or Content-Type), the pixel count is checked from the
header before any pixel is decoded, and the result is a fresh RGB image with no metadata left on it.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib

from PIL import Image, UnidentifiedImageError

from consumer.errors import ImageError, ImageTooLarge

__all__ = ["ALLOWED_FORMATS", "decode_image", "fit_image"]

_log = logging.getLogger(__name__)

# Pillow plugin names. Anything else (EPS runs Ghostscript, PSD, ICO, PPM...) is refused as not an image.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

_EXIF_ORIENTATION = 0x0112
_ORIENTATION_FIX = {  # EXIF orientation -> the transpose that shows the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What Pillow's decoders raise on hostile or broken input (OSError covers UnidentifiedImageError and
# "image file is truncated"; the rest come from plugins parsing headers and chunks). UserWarning is
# Pillow's "corrupt data" warning: only an exception where warnings are errors (the tests), and then it
# means what it says. We never change the warning filters ourselves: they are process-global.
_DECODE_ERRORS = (
    UserWarning,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    struct.error,
    zlib.error,
)


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode `data` into an RGB image with EXIF orientation applied and all metadata dropped.

    Raises `ImageTooLarge` when the header declares more than `max_pixels` pixels (checked before decoding)
    and `ImageError` (`invalid_image`) for anything that is not a complete image in an allowed format.
    """
    if not data:
        raise ImageError("image is empty")
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageError(f"image declares an empty size {width}x{height}")
            if width * height > max_pixels:
                raise ImageTooLarge(f"image is {width}x{height}, over the {max_pixels}-pixel limit")
            image.load()  # the first frame only, for GIF/WEBP/TIFF
            oriented = _apply_orientation(image)
            rgb = _to_rgb(oriented)
    # Pillow's own bomb guard (global MAX_IMAGE_PIXELS) may fire first; its warning counts where warnings
    # are errors, as in the tests. Either way the answer is the same as ours.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"image is not a {'/'.join(ALLOWED_FORMATS)} image") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"image could not be decoded: {exc!r}") from exc
    # A fresh image carries no info/EXIF/ICC/XMP/comments: nothing from the source leaks into outputs.
    return Image.frombytes("RGB", rgb.size, rgb.tobytes())


def fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale `image` to cover `width` x `height` keeping its aspect ratio, center-cropping the overflow."""
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    source_width, source_height = image.size
    scale = max(width / source_width, height / source_height)
    box_width, box_height = width / scale, height / scale
    left, top = (source_width - box_width) / 2, (source_height - box_height) / 2
    # Resizing straight from the crop box is one pass and yields exactly the frame size.
    return image.resize(
        (width, height),
        Image.Resampling.LANCZOS,
        box=(left, top, left + box_width, top + box_height),
        reducing_gap=3.0,  # large downscales first reduce by an integer factor: fast, visually the same
    )


def _apply_orientation(image: Image.Image) -> Image.Image:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        # Broken EXIF should not reject an otherwise fine picture; orientation is cosmetic.
        _log.debug("start image has unreadable EXIF; orientation ignored", exc_info=True)
        orientation = 1
    step = _ORIENTATION_FIX.get(orientation) if isinstance(orientation, int) else None
    return image if step is None else image.transpose(step)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency flattened onto white and 16-bit grey scaled (not clipped) to 8 bits."""
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda value: value * (1 / 256))
    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa"} or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, (255, 255, 255))
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas
