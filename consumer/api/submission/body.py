"""The body of `POST /v1/videos`, JSON or multipart, into the request the API will publish, checked by the
worker's own rules (intake, sanitising, banned terms) so a request the worker would reject is refused now.

Messages and field names come from the intake, which names client-chosen keys by position, never verbatim.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError

from consumer.core.intake import DeadLetter, Rejection, parse_request
from consumer.core.moderation import ContentPolicy
from consumer.errors import ApiFailure
from schemas.events import VideoRequest
from schemas.job_api import API_FILLED_FIELDS, Fallback

__all__ = ["build_request", "read_submission", "take_fallback"]

# Form fields that are text as they come; every other field is a JSON value (numbers, the metadata object).
_TEXT_FIELDS = frozenset({"prompt", "negative_prompt", "image_url", "deadline", "fallback"})
_IMAGE_PART = "image"


async def read_submission(request: web.Request, *, max_image_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    """The fields and the start image's bytes (multipart only)."""
    content_type = request.content_type
    if content_type == "application/json":
        return _json_fields(await request.read()), None
    if content_type == "multipart/form-data":
        return await _form_fields(request, max_image_bytes=max_image_bytes)
    raise ApiFailure(415, "unsupported_media_type", "send application/json or multipart/form-data")


def _json_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiFailure(400, "invalid_json", "the body is not valid UTF-8 JSON") from exc
    if not isinstance(data, dict):
        raise ApiFailure(422, "invalid_body", "the body must be a JSON object")
    return data


async def _form_fields(request: web.Request, *, max_image_bytes: int) -> tuple[dict[str, Any], bytes | None]:
    fields: dict[str, Any] = {}
    image = None
    try:
        reader = MultipartReader(request.headers, _buffered(request, await request.read()))
        position = 0
        while (part := await reader.next()) is not None:
            position += 1
            if not isinstance(part, BodyPartReader) or not part.name:
                raise ApiFailure(422, "invalid_body", f"form part {position} has no name")
            if part.name == _IMAGE_PART:
                if image is not None:
                    raise ApiFailure(422, "invalid_field", "send one image", field=_IMAGE_PART)
                image = await _read_part(part, max_image_bytes)
            elif part.name in fields:
                raise ApiFailure(422, "invalid_body", f"form part {position} repeats an earlier field")
            else:
                text = (await _read_part(part, max_image_bytes)).decode("utf-8")
                fields[part.name] = _form_value(part.name, text)
    except (ValueError, UnicodeDecodeError, HttpProcessingError) as exc:  # bad boundaries, part headers, text
        raise ApiFailure(400, "invalid_body", "the multipart body could not be read") from exc
    return fields, image


def _buffered(request: web.Request, body: bytes) -> StreamReader:
    """The body, already read under the connection guard's deadline, as a stream a multipart reader can parse.
    The limit keeps it under its high-water mark, so it never pauses the connection it nominally belongs to."""
    stream = StreamReader(request.protocol, limit=max(len(body), 1 << 16), loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    return stream


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk():
        data.extend(chunk)
        if len(data) > limit:
            raise ApiFailure(413, "body_too_large", f"a form part is over {limit} bytes")
    return bytes(data)


def _form_value(name: str, text: str) -> Any:
    if name in _TEXT_FIELDS:
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text  # the contract check names the field and says what it must be


def take_fallback(fields: dict[str, Any]) -> Fallback | None:
    """Remove the API's own `fallback` field from the submission (workers never see it) and return it."""
    value = fields.pop("fallback", None)
    if value is None:
        return None
    if value == "template":
        return "template"
    if value == "none":
        return "none"
    raise ApiFailure(422, "invalid_field", "fallback must be template or none", field="fallback")


def build_request(
    fields: dict[str, Any],
    *,
    request_id: str,
    tenant_id: str,
    max_record_bytes: int,
    policy: ContentPolicy,
) -> VideoRequest:
    """The request exactly as the worker's intake will read it; ApiFailure 422 (or 413) when it would reject it."""
    for name in sorted(API_FILLED_FIELDS & fields.keys()):
        raise ApiFailure(422, "unknown_field", f"{name} is set by the API, not the caller", field=name)
    record = {**fields, "request_id": request_id, "tenant_id": tenant_id}
    outcome = parse_request(json.dumps(record, ensure_ascii=False).encode("utf-8"), max_bytes=max_record_bytes)
    if isinstance(outcome, DeadLetter):  # only a record over the worker's size limit gets here
        raise ApiFailure(413, outcome.code, outcome.message)
    if isinstance(outcome, Rejection):
        error = outcome.error
        raise ApiFailure(422, error.code, error.message, field=error.field)
    violation = policy.violation(outcome)
    if violation is not None:
        raise ApiFailure(422, violation.code, violation.message, field=violation.field)
    return outcome
