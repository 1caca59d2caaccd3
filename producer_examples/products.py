"""From a "product created" webhook to a video request: payload model, prompt templates, request ids. Pure."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from schemas.events import ID_PATTERN, VideoRequest

__all__ = [
    "DEFAULT_TEMPLATE",
    "TEMPLATE_FIELDS",
    "ProductCreated",
    "build_request",
    "check_template",
    "derive_request_id",
    "render_prompt",
]

DEFAULT_TEMPLATE = (
    "A short product video of {title}. {description} "
    "Studio lighting, slow camera orbit, clean background, photorealistic."
)
TEMPLATE_FIELDS = frozenset({"title", "description", "product_id", "shop_id"})
_PROMPT_MAX = 1000  # the contract's limit on `prompt`


class ProductCreated(BaseModel):
    """The webhook body. Unknown fields are ignored: shop platforms send far more than a video needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # 5 + 64 + 1 + 40 + 1 + 16 characters: the derived request id stays within the contract's 128.
    product_id: Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=ID_PATTERN)]
    shop_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)] = Field(
        description="The tenant."
    )
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000)] = ""
    image_url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https://\S+$")] | None = None


def check_template(template: str) -> str:
    """Refuse templates with fields other than TEMPLATE_FIELDS, attribute or index lookups, or conversions,
    so a template can only ever interpolate plain product text."""
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(f"template field {{{name}}} is not one of {sorted(TEMPLATE_FIELDS)} (plain, no format)")
    return template


def render_prompt(template: str, product: ProductCreated) -> str:
    """The template filled in, whitespace collapsed, cut to the contract's 1000 characters at a word boundary."""
    values = {
        "title": _squash(product.title),
        "description": _squash(product.description),
        "product_id": product.product_id,
        "shop_id": product.shop_id,
    }
    prompt = _squash(check_template(template).format_map(values))
    if len(prompt) > _PROMPT_MAX:
        prompt = prompt[: _PROMPT_MAX + 1].rsplit(" ", 1)[0][:_PROMPT_MAX].rstrip()
    return prompt


def derive_request_id(shop_id: str, product_id: str, content: Mapping[str, Any]) -> str:
    """`hook:<shop>:<product>:<16 hex of sha256(content)>`: the same product with the same render inputs always
    gets the same id, so a retried webhook is recognisable downstream; an edited product gets a new one."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return f"hook:{shop_id}:{product_id}:{digest}"


def build_request(product: ProductCreated, *, template: str, render: Mapping[str, Any]) -> VideoRequest:
    """The request for a product. `render` holds the fixed render options (width, height, num_frames, ...)."""
    content: dict[str, Any] = {
        "prompt": render_prompt(template, product),
        "image_url": product.image_url,
        **render,
    }
    return VideoRequest(
        request_id=derive_request_id(product.shop_id, product.product_id, content),
        tenant_id=product.shop_id,
        metadata={"product_id": product.product_id, "source": "product-created-hook"},
        **content,
    )


def _squash(text: str) -> str:
    return " ".join(text.split())
