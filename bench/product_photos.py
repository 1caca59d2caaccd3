"""Generated product photos, one per seed: a product (a bottle, box, mug or sneaker-like shape in a colour of its own,
with a label, highlights and a shadow) on a light studio background, as shop catalogues show them. Distinct seeds
give distinct products on similar backgrounds: the hard case for a perceptual hash, since most of every photo is the
same near-white. Used by the similar-video benchmark and tests."""

from __future__ import annotations

import hashlib
import io
import random
import tempfile

from PIL import Image, ImageDraw, ImageFilter

from consumer.api.submission.image_print import image_print
from consumer.api.submission.uploads import SpooledImage
from consumer.core.similar import ImagePrint
from consumer.settings import Settings

__all__ = ["jpeg_bytes", "png_bytes", "print_of", "product_photo"]


def product_photo(seed: int, size: tuple[int, int] = (512, 512)) -> Image.Image:
    rng = random.Random(seed)
    width, height = size
    shade = rng.randint(225, 250)
    image = Image.new("RGB", size, (shade, shade, shade - rng.randint(0, 12)))
    draw = ImageDraw.Draw(image)
    for row in range(height):  # a soft studio gradient
        tone = shade - int(25 * row / height)
        draw.line([(0, row), (width, row)], fill=(tone, tone, tone - 4))
    color = (rng.randint(10, 230), rng.randint(10, 230), rng.randint(10, 230))
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.4, 0.6)
    w, h = width * rng.uniform(0.2, 0.5), height * rng.uniform(0.25, 0.6)
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    draw.ellipse((box[0], box[3] - h * 0.08, box[2] + w * 0.3, box[3] + h * 0.08), fill=(shade - 60,) * 3)  # shadow
    kind = rng.randrange(4)
    if kind == 0:  # a box
        draw.rectangle(box, fill=color)
    elif kind == 1:  # a bottle
        draw.rounded_rectangle(box, radius=w / 3, fill=color)
        draw.rectangle((cx - w / 8, box[1] - h * 0.25, cx + w / 8, box[1]), fill=color)
    elif kind == 2:  # a mug
        draw.rectangle(box, fill=color)
        draw.ellipse((box[2] - w * 0.1, cy - h / 5, box[2] + w * 0.35, cy + h / 5), outline=color, width=int(w / 10))
    else:  # a sneaker
        draw.polygon([(box[0], box[3]), (box[2], box[3]), (box[2], cy), (cx, box[1]), (box[0], cy)], fill=color)
    label = tuple(255 - part for part in color)
    for _ in range(rng.randint(1, 4)):  # a label or stripes
        top = rng.uniform(box[1], box[3] - h * 0.1)
        draw.rectangle((box[0] + w * 0.1, top, box[2] - w * 0.1, top + h * rng.uniform(0.03, 0.15)), fill=label)
    spot = rng.uniform(0.1, 0.3)
    draw.ellipse((box[0] + w * spot, box[1] + h * 0.1, box[0] + w * (spot + 0.1), box[1] + h * 0.4), fill="white")
    return image.filter(ImageFilter.GaussianBlur(1))


def jpeg_bytes(image: Image.Image, *, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def print_of(data: bytes) -> ImagePrint:
    """The print the job API takes of these uploaded bytes (`consumer.api.submission.image_print`)."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the SpooledImage
    file.write(data)
    image = SpooledImage(file=file, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    try:
        fields = Settings.model_fields  # a start-image decode's default limits, as the job API's
        limits = {
            "memory_bytes": fields["image_decode_memory_bytes"].default,
            "cpu_s": fields["image_decode_cpu_s"].default,
        }
        return image_print(image, **limits)
    finally:
        image.close()
