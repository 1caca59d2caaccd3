"""Seeds, content keys and object keys. Pure: identical requests map to identical keys."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from schemas.events import VideoRequest

__all__ = ["RENDER_VERSION", "ObjectKeys", "content_key", "derive_seed", "object_keys"]

# Bump when rendering or encoding changes what bytes a request produces, so old cache entries are not reused.
RENDER_VERSION = 1

# Fields that decide what the video looks like. request_id, tenant_id and metadata do not.
_CONTENT_FIELDS = (
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


def _digest(payload: dict[str, object]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _content(request: VideoRequest, image_sha256: str | None) -> dict[str, object]:
    # The image counts by its bytes, not its URL: the same picture at two addresses is the same request.
    content: dict[str, object] = {name: getattr(request, name) for name in _CONTENT_FIELDS}
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


def object_keys(*, prefix: str, tenant_id: str, key: str, poster_ext: str) -> ObjectKeys:
    """Per-tenant, content-addressed keys. No user input appears verbatim: the tenant is hashed too."""
    tenant = hashlib.sha256(tenant_id.encode("utf-8")).hexdigest()[:16]
    base = f"{prefix}videos/{tenant}/{key[:2]}/{key}"
    return ObjectKeys(video=f"{base}.mp4", poster=f"{base}.poster.{poster_ext}")
