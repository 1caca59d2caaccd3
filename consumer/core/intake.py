"""Turn the raw value of a request record into a request, a rejection or a dead letter. Pure.

Given the model that will render it (the worker's own, or the registry entry the job API and the product hook route
to), a request is also checked against what that model can render (`consumer.core.model_families`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from consumer.core.model_families import ServedModel, check_request
from consumer.core.sanitize import name_safely, sanitize_request
from consumer.errors import InvalidRequest, UnsafeText
from schemas.events import ID_PATTERN, VideoRequest

__all__ = ["DeadLetter", "Rejection", "parse_request", "usable_id"]

_ID = re.compile(ID_PATTERN)
_FIELDS = frozenset(VideoRequest.model_fields)
_PYDANTIC_KEY = "[key]"  # the loc part pydantic adds for an error in a dict key rather than its value


@dataclass(frozen=True)
class DeadLetter:
    """A record nobody can answer: no usable request_id. It goes to the DLQ as it came."""

    code: str
    message: str


@dataclass(frozen=True)
class Rejection:
    """A request with a usable request_id that breaks a rule: it gets a `rejected` result."""

    request_id: str
    tenant_id: str | None
    metadata: dict[str, str]
    error: InvalidRequest

    @property
    def field(self) -> str | None:
        """The request field at fault."""
        return self.error.field


def parse_request(  # noqa: PLR0911 - one early return per way a record can be unusable
    value: bytes | None, *, max_bytes: int, model: ServedModel | None = None
) -> VideoRequest | Rejection | DeadLetter:
    """Parse one record value, and check it against `model` when given. Never raises: every input maps to exactly
    one of the three outcomes."""
    if value is None:
        return DeadLetter("empty_record", "record has no value (tombstone?)")
    if len(value) > max_bytes:
        return DeadLetter("record_too_large", f"record value is {len(value)} bytes; the limit is {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DeadLetter("not_utf8", f"record value is not UTF-8 ({exc.reason} at byte {exc.start})")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and ints too long to convert
        return DeadLetter("not_json", f"record value is not JSON: {exc}")
    if not isinstance(data, dict):
        return DeadLetter("not_json_object", f"record value is a JSON {type(data).__name__}, not an object")

    request_id = usable_id(data.get("request_id"))
    if request_id is None:
        return DeadLetter("missing_request_id", "request_id is missing or not 1-128 characters of [A-Za-z0-9._:-]")
    try:
        request = VideoRequest.model_validate(data)
    except ValidationError as exc:
        return _rejection(request_id, data, exc)
    try:
        request = sanitize_request(request)
    except UnsafeText as exc:
        # Metadata is checked before the prompts: when a prompt is at fault the metadata is safe to echo.
        return Rejection(
            request_id=request.request_id,
            tenant_id=request.tenant_id,
            metadata={} if exc.field.startswith("metadata") else dict(request.metadata),
            error=exc,
        )
    try:
        if model is not None:
            check_request(request, model)
    except InvalidRequest as exc:
        return Rejection(request.request_id, request.tenant_id, dict(request.metadata), exc)
    return request


def _rejection(request_id: str, data: dict[str, Any], exc: ValidationError) -> Rejection:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    code = _code_for(first["type"], first["loc"])
    parts = [f"{_loc(err['loc'], data)}: {err['msg']}" for err in errors[:5]]
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return Rejection(
        request_id=request_id,
        tenant_id=usable_id(data.get("tenant_id"), max_length=64),
        metadata=_echo_metadata(data.get("metadata")),
        error=InvalidRequest("; ".join(parts), code=code, field=_loc(first["loc"], data)),
    )


def _code_for(error_type: str, loc: tuple[int | str, ...]) -> str:
    if loc[:1] == ("schema_version",):
        return "unsupported_schema_version"
    if error_type == "missing":
        return "missing_field"
    if error_type == "extra_forbidden":
        return "unknown_field"
    return "invalid_field"


def _loc(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    """The path of an error, with every name the client chose (an unknown field, a metadata key) named safely."""
    parts: list[str] = []
    node: object = data
    for depth, part in enumerate(loc):
        if isinstance(part, int) or part == _PYDANTIC_KEY or (depth == 0 and part in _FIELDS):
            parts.append(str(part))
        else:
            siblings = node if isinstance(node, dict) else {}
            position = next((index for index, key in enumerate(siblings, start=1) if key == part), None)
            parts.append(name_safely(part, kind="unknown field" if depth == 0 else "key", position=position))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts) or "(record)"


def usable_id(value: object, *, max_length: int = 128) -> str | None:
    """`value` when it is a well-formed id (1 to `max_length` characters of [A-Za-z0-9._:-]), else None."""
    if isinstance(value, str) and 1 <= len(value) <= max_length and _ID.fullmatch(value):
        return value
    return None


def _echo_metadata(value: object) -> dict[str, str]:
    """Echo metadata on rejections only when it is itself valid and passes the sanitising rule, as the metadata of
    an accepted request must, so results never carry junk, control or invisible characters."""
    if not isinstance(value, dict):
        return {}
    try:
        probe = VideoRequest.model_validate({"request_id": "x", "tenant_id": "x", "prompt": "x", "metadata": value})
        return dict(sanitize_request(probe).metadata)
    except (ValidationError, UnsafeText):
        return {}
