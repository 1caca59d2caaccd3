"""From a "product created" webhook to a video request: payload model, prompt templates, request ids, and the
worker's own checks applied before the shop is answered. Pure.

The shop's text goes through the worker's code, not a copy of its rules: `consumer.core.sanitize.clean_text` on the
title and the description as they arrive (so an invisible or bidirectional character is refused naming the field
the shop sent), then the finished request through `consumer.core.intake.parse_request` on the exact JSON the worker will
read, then the worker's content policy. Whatever the hook accepts, the worker's intake accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from consumer.core.intake import DeadLetter, Rejection, parse_request
from consumer.core.model_families import ServedModel
from consumer.core.moderation import ContentPolicy
from consumer.core.sanitize import clean_text
from consumer.errors import ContentPolicyViolation, InvalidRequest, UnsafeText
from schemas.events import ID_PATTERN, Priority, VideoRequest

__all__ = [
    "DEFAULT_TEMPLATE",
    "HOOK_SOURCE",
    "TEMPLATE_FIELDS",
    "ProductCreated",
    "build_request",
    "check_template",
    "derive_request_id",
    "punctuate",
    "render_prompt",
]

DEFAULT_TEMPLATE = (
    "A short product video of {title}. {description} "
    "Studio lighting, slow camera orbit, clean background, photorealistic."
)
HOOK_SOURCE = "product-created-hook"
"""`metadata.source` of every request the hook makes (and so of its result)."""
TEMPLATE_FIELDS = frozenset({"title", "description", "product_id", "shop_id"})
_PROMPT_MAX = 1000  # the contract's limit on `prompt`
_TITLE_MAX = 200
_PRODUCT_ID_MAX = 40
_SHOP_ID_MAX = 64
# The most a field can put into a prompt. The description takes whatever room is left, so it counts for nothing.
_FIELD_ROOM = {"title": _TITLE_MAX, "product_id": _PRODUCT_ID_MAX, "shop_id": _SHOP_ID_MAX, "description": 0}
_ID_PURPOSE = "vidgen product-hook request id v1"  # binds the HMAC to this use of the key
# A trimmed description ends at a space when there is one this close to the cut (not in CJK or Thai text).
_WORD_BACKOFF = 32
_JOINERS = frozenset("\u200c\u200d")
_SENTENCE_ENDS = ".!?\u2026\u3002\uff01\uff1f"  # . ! ? ... and their CJK forms
# What `punctuate` mends, in order: a space before punctuation; doubled stops (". .", "..", "!.", ",.");
# a missing space after a word's stop before a capital ("upper.White") or after a word's comma ("mesh,white").
_SPACE_BEFORE = re.compile(r"\s+([.,;:!?])")
_ELLIPSIS = re.compile(r"\.{3,}")
_DOUBLED_STOP = re.compile(r"([.!?\u2026,;:])(?:\s*\.)+")
_STOP_THEN_CAPITAL = re.compile(r"(?<=[a-z]{2}[.!?])(?=[A-Z])")
_COMMA_THEN_WORD = re.compile(r"(?<=[^\W\d_],)(?=[^\W\d_])")


def _cleaned(field: str, *, max_length: int | None = None) -> Callable[[str], str]:
    """The worker's text rule (`clean_text`: controls removed, invisible and bidi characters refused, NFC), then
    whitespace collapsed; lengths count after normalisation, which can make text longer (U+FB2C becomes 3)."""

    def clean(value: str) -> str:
        try:
            cleaned = _squash(clean_text(value, field))
        except UnsafeText as exc:
            raise PydanticCustomError("invalid_field", "{reason}", {"reason": exc.message}) from None
        if max_length is not None and not 1 <= len(cleaned) <= max_length:
            raise PydanticCustomError(
                "invalid_field",
                "{field} must be 1-{max_length} characters after removing control characters and NFC normalisation",
                {"field": field, "max_length": max_length},
            )
        return cleaned

    return clean


class ProductCreated(BaseModel):
    """The webhook body. Unknown fields are ignored: shop platforms send far more than a video needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: Annotated[str, StringConstraints(min_length=1, max_length=_PRODUCT_ID_MAX, pattern=ID_PATTERN)]
    shop_id: Annotated[str, StringConstraints(min_length=1, max_length=_SHOP_ID_MAX, pattern=ID_PATTERN)] = Field(
        description="The tenant."
    )
    title: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=_TITLE_MAX),
        AfterValidator(_cleaned("title", max_length=_TITLE_MAX)),
    ]
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=5000), AfterValidator(_cleaned("description"))
    ] = ""
    image_url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https://\S+$")] | None = None


def check_template(template: str) -> str:
    """Refuse templates with fields other than TEMPLATE_FIELDS, attribute or index lookups, or conversions (a
    template can only ever interpolate plain product text), characters the worker refuses, and templates whose
    own text with the longest title and ids would not leave the description any room in the prompt."""
    literal = ""
    needed = 0
    for text, name, spec, conversion in string.Formatter().parse(template):
        literal += text
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(f"template field {{{name}}} is not one of {sorted(TEMPLATE_FIELDS)} (plain, no format)")
        needed += _FIELD_ROOM[name]
    try:
        clean_text(literal, "template")
    except UnsafeText as exc:
        raise ValueError(exc.message) from None
    needed += len(literal)
    if needed > _PROMPT_MAX:
        raise ValueError(
            f"template text with the longest title and ids takes {needed} of the prompt's {_PROMPT_MAX} characters"
        )
    return template


def render_prompt(template: str, product: ProductCreated) -> str:
    """The template filled in, put through the worker's text rule and whitespace collapsed, within the contract's
    1000 characters. The template's own text, the title and the ids are kept whole; only the description is
    trimmed: never between a character and its combining marks or around a joiner, so the cut stays valid (and the
    length stays put) under NFC, and at a space when there is one within the last few characters."""
    check_template(template)

    def fill(description: str) -> str:
        values = {
            "title": product.title,
            "description": _sentence(description),
            "product_id": product.product_id,
            "shop_id": product.shop_id,
        }
        return punctuate(_squash(clean_text(template.format_map(values), "prompt")))

    description = product.description
    prompt = fill(description)
    if len(prompt) <= _PROMPT_MAX:
        return prompt
    # Longest description prefix that fits; the length after NFC grows with the prefix, so bisection finds it.
    fits, too_long = 0, len(description)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(fill(description[:middle])) <= _PROMPT_MAX:
            fits = middle
        else:
            too_long = middle
    cut = _cut_point(description, fits)
    while cut > 0 and len(fill(description[:cut])) > _PROMPT_MAX:  # a stop added to the cut text can tip it over
        cut = _cut_point(description, cut - 1)
    return fill(description[:cut])


def punctuate(text: str) -> str:
    """Product text joined into a template, with its punctuation mended: no space before a stop or comma, no doubled
    stop (a title ending in "." before the template's own, an empty description between two stops, "!." or ",."),
    and a space after a word's full stop before a capital ("upper.White") or after a word's comma ("mesh,white").
    Numbers ("3.5", "1,000"), domains ("example.com"), ellipses and CJK punctuation are left as they are."""
    text = _ELLIPSIS.sub("\u2026", _SPACE_BEFORE.sub(r"\1", text))
    text = _DOUBLED_STOP.sub(lambda stop: "." if stop[1] in ",;:" else stop[1], text)
    return _COMMA_THEN_WORD.sub(" ", _STOP_THEN_CAPITAL.sub(" ", text))


def derive_request_id(key: bytes, shop_id: str, product_id: str, content: Mapping[str, Any]) -> str:
    """`hook:` and 32 hex digits (128 bits) of HMAC-SHA256 under the hook's own key over a canonical JSON array
    of the shop, the product and the render inputs. The same product with the same inputs always gets the same id
    (a retried webhook is recognised downstream), an edited product a new one; without the key nobody can predict
    an id, and since the parts are JSON-encoded, no two (shop, product) pairs share one (`acme` + `shoes:42` vs
    `acme:shoes` + `42`)."""
    canonical = json.dumps(
        [_ID_PURPOSE, shop_id, product_id, content], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "hook:" + hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def build_request(
    product: ProductCreated,
    *,
    template: str,
    render: Mapping[str, Any],
    priority: Priority | None = None,
    id_key: bytes,
    policy: ContentPolicy,
    max_record_bytes: int,
    deadline: datetime | None = None,
    model: ServedModel | None = None,
) -> VideoRequest:
    """The request for a product, exactly as the worker's intake will read it. `render` holds the fixed render
    options (width, height, num_frames, ...); `model` the pool's model it names, whose family's rules it is checked
    against. `deadline` is not part of the request id: a retried webhook names
    the same request whenever it comes.

    Raises what the worker would reject it with: `InvalidRequest` (a broken contract rule or record limit) or
    `ContentPolicyViolation`; a policy violation names the payload field that holds the term (`title`,
    `description`) when one does on its own, else `prompt`."""
    content: dict[str, Any] = {"prompt": render_prompt(template, product), "image_url": product.image_url, **render}
    record = {
        "request_id": derive_request_id(id_key, product.shop_id, product.product_id, content),
        "tenant_id": product.shop_id,
        "priority": priority,  # not in the id either: the lane changes when, not what, is rendered
        "metadata": {"product_id": product.product_id, "source": HOOK_SOURCE},
        **content,
    }
    if deadline is not None:
        record["deadline"] = deadline.isoformat()
    if model is not None:  # not in the id: the same product on another model is the same request
        record["model"] = model.id
    value = json.dumps(record, ensure_ascii=False).encode("utf-8")
    outcome = parse_request(value, max_bytes=max_record_bytes, model=model)
    if isinstance(outcome, DeadLetter):  # only a record over the worker's size limit gets here
        raise InvalidRequest(outcome.message, code=outcome.code)
    if isinstance(outcome, Rejection):
        raise outcome.error
    violation = policy.violation(outcome)
    if violation is not None:
        field = next(
            (name for name in ("title", "description") if policy.find(getattr(product, name)) is not None), "prompt"
        )
        raise ContentPolicyViolation(f"{field}: violates the content policy", field=field, rule=violation.rule)
    return outcome


def _cut_point(text: str, limit: int) -> int:
    """Where to cut `text` at or before `limit`: not before a combining mark and not next to a joiner; then back to
    a space if one is within `_WORD_BACKOFF` characters."""
    cut = limit
    while cut > 0 and _joined(text, cut):
        cut -= 1
    space = text.rfind(" ", max(0, cut - _WORD_BACKOFF), cut + 1)
    return space if space > 0 else cut


def _joined(text: str, index: int) -> bool:
    """Whether cutting between text[index - 1] and text[index] would split a character from its marks or a joined
    sequence (emoji ZWJ sequences, Indic conjuncts)."""
    after = text[index]
    return unicodedata.category(after).startswith("M") or after in _JOINERS or text[index - 1] in _JOINERS


def _sentence(text: str) -> str:
    """A description as a sentence: ending with a stop (a full stop added when it has none), or empty."""
    text = text.strip()
    return text if not text or text[-1] in _SENTENCE_ENDS else text + "."


def _squash(text: str) -> str:
    return " ".join(text.split())
