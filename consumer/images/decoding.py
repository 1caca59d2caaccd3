"""Safe decoding of an untrusted start image, and fitting it to the video frame.

Pure and CPU-bound: the worker runs it in a child process with hard memory and CPU limits
(`consumer/images/sandbox.py`). The format is sniffed from the bytes against an allowlist (never from a file name
or Content-Type); before any pixel is decoded, TIFF directories (TIFF files and EXIF blocks) are checked for tag,
value and strip/tile counts and the header's size for pixels and decoded bytes; the result is a fresh RGB image with
no metadata left on it.
"""

from __future__ import annotations

import io
import logging
import mmap
import struct
import zlib

from PIL import Image, ImageMode, UnidentifiedImageError

from consumer.errors import ImageError, ImageTooLarge

__all__ = [
    "ALLOWED_FORMATS",
    "TIFF_MAX_STRIPS",
    "TIFF_MAX_TAGS",
    "TIFF_MAX_VALUES",
    "check_size",
    "check_tiff_directory",
    "decode_image",
    "fit_image",
]

_log = logging.getLogger(__name__)

# Pillow plugin names. Anything else (EPS runs Ghostscript, PSD, ICO, PPM...) is refused as not an image.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

# A TIFF directory is parsed by Pillow in Python: each numeric value becomes an object when read and each strip
# or tile an entry of the decode list. A 19 MB file can declare millions of either (seconds of CPU, ~1 GiB).
# Legitimate images stay far below these: a 40-megapixel TIFF written one row per strip has ~6,300 strips.
TIFF_MAX_TAGS = 1_000  # entries of one directory
TIFF_MAX_STRIPS = 65_536  # strips or tiles of one image
TIFF_MAX_VALUES = 2 * TIFF_MAX_STRIPS + 8_192  # numeric values of one directory: offset and size per strip, + the rest

_TIFF_HEADERS = {  # magic -> (byte order, BigTIFF)
    b"II*\0": ("<", False),
    b"MM\0*": (">", False),
    b"II+\0": ("<", True),
    b"MM\0+": (">", True),
}
_TIFF_BLOB_TYPES = frozenset({1, 2, 7})  # BYTE, ASCII, UNDEFINED: one bytes object each, whatever their length
_TIFF_PIECES = {273: "strips", 324: "tiles"}  # StripOffsets, TileOffsets: one entry per piece
_EXIF_PREFIX = b"Exif\0\0"

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


def decode_image(data: bytes, *, max_pixels: int, max_decoded_bytes: int | None = None) -> Image.Image:
    """Decode `data` into a fresh RGB image with EXIF orientation applied and all metadata dropped.

    Raises `ImageTooLarge` when a TIFF directory is over the tag, value or strip limits, or the header declares
    more than `max_pixels` pixels or more than `max_decoded_bytes` bytes of pixels (pixels x bands x bytes per
    sample; None: no byte limit), all checked before decoding, and `ImageError` (`invalid_image`) for anything
    that is not a complete image in an allowed format.
    """
    if not data:
        raise ImageError("image is empty")
    check_tiff_directory(data)
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
            check_size(image, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
            image.load()  # the first frame only, for GIF/WEBP/TIFF
            return _fresh_rgb(_apply_orientation(image))
    # Pillow's own bomb guard (global MAX_IMAGE_PIXELS) may fire first; its warning counts where warnings
    # are errors, as in the tests. Either way the answer is the same as ours.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image has too many pixels: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"image is not a {'/'.join(ALLOWED_FORMATS)} image") from exc
    except _DECODE_ERRORS as exc:
        raise ImageError(f"image could not be decoded: {exc!r}") from exc


def check_tiff_directory(data: bytes | mmap.mmap, *, what: str = "TIFF") -> None:
    """Refuse a TIFF structure (a TIFF file, or an EXIF block) whose first directory, the one Pillow parses, holds
    more than TIFF_MAX_TAGS tags, TIFF_MAX_VALUES numeric values or TIFF_MAX_STRIPS strips or tiles. Reads only
    the directory's entry table; anything that is not TIFF, or is truncated, is left to Pillow to judge."""
    layout = _TIFF_HEADERS.get(data[:4])
    if layout is None:
        return
    order, big = layout
    offset_format, count_format, entry_format = ("Q", "Q", "HHQ") if big else ("I", "H", "HHI")
    entry_size = 20 if big else 12
    try:
        (directory,) = struct.unpack_from(order + offset_format, data, 8 if big else 4)
        (tags,) = struct.unpack_from(order + count_format, data, directory)
    except struct.error:
        return
    if tags > TIFF_MAX_TAGS:
        raise ImageTooLarge(f"{what} directory has {tags} tags, over the limit of {TIFF_MAX_TAGS}")
    first = directory + struct.calcsize(count_format)
    values = 0
    for index in range(tags):
        try:
            tag, kind, count = struct.unpack_from(order + entry_format, data, first + index * entry_size)
        except struct.error:
            return
        if tag in _TIFF_PIECES and count > TIFF_MAX_STRIPS:
            raise ImageTooLarge(f"{what} image has {count} {_TIFF_PIECES[tag]}, over the limit of {TIFF_MAX_STRIPS}")
        if kind not in _TIFF_BLOB_TYPES:
            values += count
    if values > TIFF_MAX_VALUES:
        raise ImageTooLarge(f"{what} directory holds {values} numeric values, over the limit of {TIFF_MAX_VALUES}")


def check_size(image: Image.Image, *, max_pixels: int, max_decoded_bytes: int | None) -> None:
    """From the header alone: a non-empty size within the pixel and decoded-byte limits."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height}, over the {max_pixels}-pixel limit")
    mode = ImageMode.getmode(image.mode)
    decoded = width * height * len(mode.bands) * int(mode.typestr[2:])
    if max_decoded_bytes is not None and decoded > max_decoded_bytes:
        raise ImageTooLarge(
            f"image is {width}x{height} in mode {image.mode}: {decoded} bytes decoded, "
            f"over the {max_decoded_bytes}-byte limit"
        )


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
    exif = image.info.get("exif")
    if isinstance(exif, bytes):  # parsed by getexif() below; a TIFF file's own directory was checked already
        check_tiff_directory(exif.removeprefix(_EXIF_PREFIX), what="EXIF")
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        # Broken EXIF should not reject an otherwise fine picture; orientation is cosmetic.
        _log.debug("start image has unreadable EXIF; orientation ignored", exc_info=True)
        orientation = 1
    step = _ORIENTATION_FIX.get(orientation) if isinstance(orientation, int) else None
    return image if step is None else image.transpose(step)


def _fresh_rgb(image: Image.Image) -> Image.Image:
    """The picture as an RGB image of its own, never the decoder's object, with no info/EXIF/ICC/XMP/comments:
    nothing from the source leaks into outputs. Transparency is flattened onto white and 16-bit grey scaled (not
    clipped) to 8 bits."""
    if image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda value: value * (1 / 256))
    if image.mode in {"RGBA", "LA", "PA", "RGBa"} or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = image.convert("RGB")  # a new plain Image even when the mode is RGB already
    rgb.info = {}  # what convert() copied; a plain Image holds no other metadata
    return rgb
