"""An uploaded image too large to decode in the job API's process is printed in a child, to the same print."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from consumer.api.submission import image_print as printing
from consumer.api.submission.uploads import SpooledImage

LIMITS = {"memory_bytes": 768 << 20, "cpu_s": 5}  # the worker's start-image decode defaults


def _spooled(path: Path, data: bytes) -> SpooledImage:
    path.write_bytes(data)
    return SpooledImage(file=path.open("rb"), size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_a_large_png_is_printed_in_a_child_as_it_would_be_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photo = Image.linear_gradient("L").resize((1400, 1100)).convert("RGB")  # 4.6 MB decoded: over the limit
    photo.paste((200, 30, 40), (300, 200, 900, 700))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    image = _spooled(tmp_path / "photo.png", buffer.getvalue())
    try:
        assert printing.IN_PROCESS_BYTES < 1400 * 1100 * 3
        in_child = printing.image_print(image, **LIMITS)
        monkeypatch.setattr(printing, "IN_PROCESS_BYTES", 1 << 30)
        assert printing.image_print(image, **LIMITS) == in_child
        image.file.seek(0)
        assert image.file.read() == buffer.getvalue()  # the file is left whole for the upload
    finally:
        image.close()


def test_a_child_that_cannot_decode_raises_value_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (1400, 1100), (10, 20, 30)).save(buffer, format="PNG")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    image = _spooled(tmp_path / "broken.png", truncated)
    try:
        with pytest.raises((ValueError, OSError)):
            printing.image_print(image, **LIMITS)
    finally:
        image.close()
