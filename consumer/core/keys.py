"""Seeds, content keys and object keys. Pure: identical requests map to identical keys."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from schemas.events import VideoRequest

__all__ = [
    "CONTENT_FIELDS",
    "RENDER_VERSION",
    "ObjectKeys",
    "content_key",
    "derive_seed",
    "is_plain_key",
    "object_keys",
    "tenant_may_read",
    "upload_key",
    "upload_key_of_digest",
    "upload_prefix",
]

# Bump when rendering or encoding changes what bytes a request produces, so old cache entries are not reused.
RENDER_VERSION = 1

CONTENT_FIELDS = (
    "prompt",
    "negative_prompt",
    "image_url",
    "width",
    "height",
    "num_frames",
    "num_inference_steps",
    "guidance_scale",
    "fps",
)
"""Fields that decide what the video looks like (with the seed and the model). request_id, tenant_id and metadata do
not."""


def _digest(payload: dict[str, object]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _content(request: VideoRequest, image_sha256: str | None) -> dict[str, object]:
    # The image counts by its bytes, not its URL: the same picture at two addresses is the same request.
    content: dict[str, object] = {name: getattr(request, name) for name in CONTENT_FIELDS}
    content["image_url"] = None
    content["image_sha256"] = image_sha256
    return content


def derive_seed(request: VideoRequest, *, image_sha256: str | None) -> int:
    """The request's seed, or one derived from its content so identical requests render identically."""
    if request.seed is not None:
        return request.seed
    return int(_digest(_content(request, image_sha256))[:8], 16)


def content_key(request: VideoRequest, *, seed: int, image_sha256: str | None, model: str) -> str:
    """sha256 over everything that decides the output bytes: image bytes (not their URL), prompt, parameters,
    seed, model and render version."""
    content = _content(request, image_sha256)
    content.update(seed=seed, model=model, render_version=RENDER_VERSION)
    return _digest(content)


@dataclass(frozen=True)
class ObjectKeys:
    video: str
    poster: str


def _tenant_digest(tenant_id: str) -> str:
    # Unkeyed on purpose: access is decided by the request's own tenant_id, never by a prefix being unguessable.
    return hashlib.sha256(tenant_id.encode("utf-8")).hexdigest()


def object_keys(*, prefix: str, tenant_id: str, key: str, poster_ext: str) -> ObjectKeys:
    """Per-tenant, content-addressed keys. No user input appears verbatim: the tenant is hashed too."""
    base = f"{prefix}videos/{_tenant_digest(tenant_id)[:16]}/{key[:2]}/{key}"
    return ObjectKeys(video=f"{base}.mp4", poster=f"{base}.poster.{poster_ext}")


_UPLOAD_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


def upload_prefix(*, prefix: str, tenant_id: str) -> str:
    """The tenant's folder for start images in the output bucket, the only part of it its requests may read.
    128 bits of the tenant's hash, so no two tenants share a folder."""
    return f"{prefix}uploads/{_tenant_digest(tenant_id)[:32]}/"


def upload_key(data: bytes, filename: str, *, prefix: str, tenant_id: str) -> str:
    """Where a tenant's start image is uploaded: content-addressed, so the same image uploaded twice is one
    object (and the worker's cache matches). Only the file name's suffix is kept, and only a known image one."""
    return upload_key_of_digest(hashlib.sha256(data).hexdigest(), filename, prefix=prefix, tenant_id=tenant_id)


def upload_key_of_digest(sha256_hex: str, filename: str, *, prefix: str, tenant_id: str) -> str:
    """`upload_key` from the image's SHA-256 (hex), for an image hashed while it streamed in."""
    suffix = PurePosixPath(filename).suffix.lower()
    name = sha256_hex[:32] + (suffix if suffix in _UPLOAD_SUFFIXES else "")
    return upload_prefix(prefix=prefix, tenant_id=tenant_id) + name


def is_plain_key(key: str) -> bool:
    """A key of `/`-separated segments of letters, digits, `.`, `_` and `-`, none empty and none only dots.
    S3 keys are literal, but anything a path normaliser, a proxy or a person could read another way (`..`,
    `//`, a leading `/`, `%2e`, `\\`, `?`, control or non-ASCII characters) is refused rather than interpreted."""
    return all(_PLAIN_SEGMENT.fullmatch(segment) and segment.strip(".") for segment in key.split("/"))


def tenant_may_read(key: str, *, prefix: str, tenant_id: str) -> bool:
    """Whether a request of `tenant_id` may read `key` from the output bucket: a plain key inside the tenant's
    own upload folder, nothing else (never `videos/`, never another tenant's folder)."""
    own = upload_prefix(prefix=prefix, tenant_id=tenant_id)
    return key.startswith(own) and is_plain_key(key.removeprefix(own))
