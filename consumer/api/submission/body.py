"""The body of `POST /v1/videos`, JSON or multipart, into the request the API will publish, checked by the
worker's own rules (intake, sanitising, banned terms) so a request the worker would reject is refused now.

The body is read here, after the caller was authenticated and rate-limited on its headers, and streamed: a size
declared over the cap is refused (413) before a byte is read, the body's bytes are reserved in the process's
`BodyBudget` first (503 when it is full), a JSON body (or a form's text fields together) may be at most
`VIDGEN_MAX_RECORD_BYTES` (the largest record a worker reads), and the image part (`input_reference`, as OpenAI's
SDKs send it) goes to a temporary file (`consumer.api.submission.uploads`). A client that sent `Expect:
100-continue` is told to continue only then. In a form, `metadata` is a JSON object, or one `metadata[KEY]` field per
key (how OpenAI's SDKs send a dict in a form; `input_reference[image_url]` likewise).

Messages and field names come from the intake, which names client-chosen keys by position, never verbatim.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError

from consumer.api.routes.error_answers import error_response
from consumer.api.submission.body_budget import BodyBudget
from consumer.api.submission.uploads import IMAGE_FIELD, SpooledImage, spool_part
from consumer.core.intake import DeadLetter, Rejection, parse_request
from consumer.core.moderation import ContentPolicy
from consumer.core.sanitize import name_safely
from consumer.errors import ApiFailure
from schemas.events import VideoRequest
from schemas.job_api import API_FILLED_FIELDS, Fallback

__all__ = ["BodyLimits", "Submission", "build_request", "defer_continue", "received_submission", "take_fallback"]

# Form fields that are text as they come; every other field is a JSON value (numbers, the metadata object).
_TEXT_FIELDS = frozenset({"prompt", "negative_prompt", "image_url", "deadline", "fallback", "model", "size", "seconds"})
_OBJECT_FIELD = re.compile(r"(metadata|input_reference)\[(.+)\]", re.DOTALL)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True)
class BodyLimits:
    max_body_bytes: int  # a multipart body: the image and the fields
    max_fields_bytes: int  # a JSON body, or a form's text fields together
    max_image_bytes: int


@dataclass
class Submission:
    fields: dict[str, Any]
    image: SpooledImage | None  # multipart only

    def close(self) -> None:
        if self.image is not None:
            self.image.close()


async def defer_continue(request: web.Request) -> web.Response | None:
    """The route's `Expect` handler: no `100 Continue` before the request was judged on its headers (aiohttp's own
    handler sends it before any middleware runs); `received_submission` sends it when it starts reading."""
    if request.version != HttpVersion11 or _expects_continue(request):
        return None
    return error_response(417, "expectation_failed", "the only Expect this API knows is 100-continue")


def _expects_continue(request: web.Request) -> bool:
    return request.version == HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue"


@contextlib.asynccontextmanager
async def received_submission(
    request: web.Request, *, limits: BodyLimits, budget: BodyBudget
) -> AsyncIterator[Submission]:
    """The fields and the spooled start image (multipart only), held (the image's file, the budget) for the block."""
    content_type = request.content_type
    if content_type == "application/json":
        cap = limits.max_fields_bytes
    elif content_type == "multipart/form-data":
        cap = limits.max_body_bytes
    else:
        raise ApiFailure(415, "unsupported_media_type", "send application/json or multipart/form-data")
    declared = request.content_length
    if declared is not None and declared > cap:
        raise ApiFailure(413, "body_too_large", f"the body is over {cap} bytes")
    with budget.reserve(cap if declared is None else declared):
        if _expects_continue(request):
            await request.writer.write(_CONTINUE)
        if content_type == "application/json":
            submission = Submission(_json_fields(await _read_capped(request.content.readany, cap, "the body")), None)
        else:
            submission = await _form_fields(request, limits=limits)
        try:
            yield submission
        finally:
            submission.close()


async def _read_capped(read: Callable[[], Awaitable[bytes]], cap: int, what: str) -> bytes:
    data = bytearray()
    while chunk := await read():
        data += chunk
        if len(data) > cap:
            raise ApiFailure(413, "body_too_large", f"{what} is over {cap} bytes")
    return bytes(data)


def _json_fields(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiFailure(400, "invalid_json", "the body is not valid UTF-8 JSON") from exc
    if not isinstance(data, dict):
        raise ApiFailure(422, "invalid_body", "the body must be a JSON object")
    return data


async def _form_fields(request: web.Request, *, limits: BodyLimits) -> Submission:
    submission = Submission({}, None)
    try:
        await _read_parts(MultipartReader(request.headers, request.content), submission, limits)
    except (ValueError, HttpProcessingError) as exc:  # bad boundaries, part headers, text (UnicodeDecodeError)
        submission.close()
        raise ApiFailure(400, "invalid_body", "the multipart body could not be read") from exc
    except BaseException:
        submission.close()
        raise
    return submission


async def _read_parts(reader: MultipartReader, submission: Submission, limits: BodyLimits) -> None:
    text_left = limits.max_fields_bytes
    position = 0
    while (part := await reader.next()) is not None:
        position += 1
        if not isinstance(part, BodyPartReader) or not part.name:
            raise ApiFailure(422, "invalid_body", f"form part {position} has no name")
        if part.name == IMAGE_FIELD:
            if submission.image is not None:
                raise ApiFailure(422, "invalid_field", "send one image", field=IMAGE_FIELD)
            submission.image = await spool_part(part, max_bytes=limits.max_image_bytes)
        elif part.filename is not None:
            field = name_safely(part.name, kind="form part", position=position)
            raise ApiFailure(422, "unknown_field", f"a file goes in the {IMAGE_FIELD} part", field=field)
        else:
            raw = await _read_capped(part.read_chunk, text_left, "the form's text fields together")
            text_left -= len(raw)
            _set_field(submission.fields, part.name, raw.decode("utf-8"), position)


def _set_field(fields: dict[str, Any], name: str, text: str, position: int) -> None:
    """A form field into the fields: `metadata[KEY]` as one key of `metadata` (`input_reference[KEY]` likewise),
    every other name as itself."""
    entry = _OBJECT_FIELD.fullmatch(name)
    if entry is None:
        if name in fields:
            raise ApiFailure(422, "invalid_body", f"form part {position} repeats an earlier field")
        fields[name] = _form_value(name, text)
        return
    parent = fields.setdefault(entry[1], {})
    if not isinstance(parent, dict) or entry[2] in parent:
        raise ApiFailure(422, "invalid_body", f"form part {position} repeats an earlier field")
    parent[entry[2]] = text


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
