"""What the API checks before it stores a start image or publishes a request: pure, no servers."""

from __future__ import annotations

import hashlib
import io
import struct
import tempfile

import pytest
from PIL import Image

from consumer.api.submission.body import build_request
from consumer.api.submission.uploads import CheckedImage, SpooledImage, check_upload
from consumer.core.moderation import ContentPolicy
from consumer.errors import ApiFailure, ImageError, ImageTooLarge

_LIMITS = {"key_prefix": "p/", "max_pixels": 1_000_000, "max_decoded_bytes": 4_000_000}


def _spooled(data: bytes) -> SpooledImage:
    """What `spool_part` leaves of an uploaded part: a temporary file, its size and hash."""
    file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by each test's `_check`
    file.write(data)
    return SpooledImage(file=file, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _check(data: bytes, *, tenant_id: str) -> CheckedImage:
    image = _spooled(data)
    try:
        return check_upload(image, tenant_id=tenant_id, **_LIMITS)
    finally:
        image.close()


def _image(kind: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(buffer, format=kind)
    return buffer.getvalue()


@pytest.mark.parametrize(("kind", "suffix", "mime"), [("PNG", ".png", "image/png"), ("JPEG", ".jpg", "image/jpeg")])
def test_type_comes_from_the_bytes_and_the_key_from_the_content(kind: str, suffix: str, mime: str) -> None:
    data = _image(kind)
    checked = _check(data, tenant_id="shop-1")
    assert checked.content_type == mime and checked.key.endswith(suffix)
    assert checked.key.startswith("p/uploads/") and checked.key == _check(data, tenant_id="shop-1").key
    assert checked.key != _check(data, tenant_id="shop-2").key  # each tenant's own folder


def test_what_is_not_an_allowed_image_is_refused_by_type() -> None:
    for data in (b"%!PS-Adobe-3.0 EPSF-3.0\n", b"GIF87a", b"<svg xmlns='http://www.w3.org/2000/svg'/>"):
        with pytest.raises(ImageError) as refused:
            _check(data, tenant_id="t")
        assert refused.value.field == "input_reference"


def test_limits_are_checked_from_the_header_without_decoding() -> None:
    with pytest.raises(ImageTooLarge):
        _check(_image("PNG", (1100, 1000)), tenant_id="t")
    # A TIFF directory declaring a million strips is refused before Pillow parses it.
    entries = struct.pack("<HHII", 273, 4, 1_000_000, 8)
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + entries + b"\0\0\0\0"
    with pytest.raises(ImageTooLarge):
        _check(tiff, tenant_id="t")
    with pytest.raises(ImageError):
        _check(b"", tenant_id="t")


def test_build_request_applies_the_workers_rules() -> None:
    policy = ContentPolicy(["forbidden thing"])
    body = {"prompt": "a shoe", "width": 256, "height": 256}
    request = build_request(dict(body), request_id="vid-1", tenant_id="shop-1", max_record_bytes=1 << 20, policy=policy)
    assert (request.request_id, request.tenant_id, request.width) == ("vid-1", "shop-1", 256)
    cases = [
        ({**body, "tenant_id": "x"}, 422, "unknown_field", "tenant_id"),
        ({**body, "prompt": "a forbidden thing"}, 422, "content_policy", "prompt"),
        ({**body, "height": 100}, 422, "invalid_field", "height"),
        ({**body, "metadata": {"k": "v" * 600}}, 422, "invalid_field", None),
        ({**body, "negative_prompt": "x" * 5000}, 422, "invalid_field", "negative_prompt"),
    ]
    for fields, status, code, field in cases:
        with pytest.raises(ApiFailure) as refused:
            build_request(fields, request_id="vid-1", tenant_id="shop-1", max_record_bytes=1 << 20, policy=policy)
        assert (refused.value.status, refused.value.code) == (status, code), fields
        assert field is None or refused.value.field == field
    with pytest.raises(ApiFailure) as too_big:
        build_request(dict(body), request_id="vid-1", tenant_id="shop-1", max_record_bytes=64, policy=policy)
    assert too_big.value.status == 413
