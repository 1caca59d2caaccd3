"""Intake: every way a record value maps to a dead letter, a rejection or a request, and what a rejection echoes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumer.core.intake import DeadLetter, Rejection, parse_request
from consumer.errors import InvalidRequest
from schemas.events import VideoRequest

LIMIT = 1_048_576
VALID: dict[str, Any] = {"request_id": "r-1", "tenant_id": "acme", "prompt": "a red shoe on a table"}


def _parse(value: bytes | None, *, max_bytes: int = LIMIT) -> VideoRequest | Rejection | DeadLetter:
    return parse_request(value, max_bytes=max_bytes)


def _record(**changes: Any) -> bytes:
    data = {**VALID, **changes}
    return json.dumps({key: value for key, value in data.items() if value is not _DROP}).encode()


_DROP = object()


def _rejection(value: bytes) -> Rejection:
    outcome = _parse(value)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def _dead_letter(value: bytes | None, *, max_bytes: int = LIMIT) -> DeadLetter:
    outcome = _parse(value, max_bytes=max_bytes)
    assert isinstance(outcome, DeadLetter), outcome
    return outcome


# --- Dead letters: no usable request_id, nobody to answer ------------------------------------------------


def test_tombstone_is_empty_record() -> None:
    assert _dead_letter(None).code == "empty_record"


def test_value_over_the_limit_is_too_large_and_says_both_sizes() -> None:
    letter = _dead_letter(b"x" * 2_000, max_bytes=1_024)
    assert letter.code == "record_too_large"
    assert "2000" in letter.message
    assert "1024" in letter.message


def test_value_at_the_limit_is_parsed() -> None:
    value = _record()
    assert isinstance(_parse(value, max_bytes=len(value)), VideoRequest)


def test_invalid_utf8_is_not_utf8_with_the_byte_offset() -> None:
    letter = _dead_letter(b'{"request_id": "\xff"}')
    assert letter.code == "not_utf8"
    assert "byte 16" in letter.message


@pytest.mark.parametrize("value", [b"", b"{", b"not json", b'{"a": 1,}', b"[" * 100_000])
def test_unparseable_or_absurdly_deep_json_is_not_json(value: bytes) -> None:
    assert _dead_letter(value).code == "not_json"


@pytest.mark.parametrize("value", [b"[]", b"1", b'"r-1"', b"null", b"true"])
def test_json_that_is_not_an_object_is_not_json_object(value: bytes) -> None:
    assert _dead_letter(value).code == "not_json_object"


@pytest.mark.parametrize(
    "request_id",
    [_DROP, None, "", 7, ["r-1"], "has space", "x" * 129, "ünicode", "slash/id"],
)
def test_unusable_request_id_is_missing_request_id(request_id: Any) -> None:
    assert _dead_letter(_record(request_id=request_id)).code == "missing_request_id"


def test_request_id_of_128_characters_is_usable() -> None:
    assert isinstance(_parse(_record(request_id="a" * 128)), VideoRequest)


def test_request_id_with_a_trailing_newline_is_dead_lettered() -> None:
    assert _dead_letter(_record(request_id="r-1\n")).code == "missing_request_id"


# --- Rejections: a usable request_id, a broken rule -------------------------------------------------------


def test_valid_record_is_a_request_with_defaults() -> None:
    request = _parse(_record())
    assert isinstance(request, VideoRequest)
    assert (request.width, request.height, request.num_frames, request.seed) == (512, 512, 25, None)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_other_schema_version_is_unsupported(version: Any) -> None:
    rejection = _rejection(_record(schema_version=version))
    assert rejection.error.code == "unsupported_schema_version"
    assert rejection.field == "schema_version"


@pytest.mark.parametrize("field", ["tenant_id", "prompt"])
def test_absent_required_field_is_missing_field(field: str) -> None:
    rejection = _rejection(_record(**{field: _DROP}))
    assert rejection.error.code == "missing_field"
    assert rejection.field == field
    assert rejection.error.message.startswith(f"{field}: ")


def test_unexpected_field_is_unknown_field() -> None:
    rejection = _rejection(_record(colour="red"))
    assert rejection.error.code == "unknown_field"
    assert rejection.field == "colour"
    assert "colour" in rejection.error.message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"width": 100}, "width"),
        ({"width": 520}, "width"),  # not a multiple of 16
        ({"height": 2048}, "height"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_inference_steps": 101}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"fps": "fast"}, "fps"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"prompt": "   "}, "prompt"),  # trimmed, then too short
        ({"prompt": "x" * 1001}, "prompt"),
        ({"negative_prompt": 5}, "negative_prompt"),
        ({"image_url": "http://plain.example/a.png"}, "image_url"),
        ({"image_url": "file:///etc/passwd"}, "image_url"),
        ({"tenant_id": "has space"}, "tenant_id"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
        ({"metadata": "not a dict"}, "metadata"),
    ],
)
def test_broken_constraint_is_invalid_field_naming_it(changes: dict[str, Any], field: str) -> None:
    rejection = _rejection(_record(**changes))
    assert rejection.error.code == "invalid_field"
    assert rejection.field == field
    assert rejection.error.message.startswith(f"{field}: ")
    assert isinstance(rejection.error, InvalidRequest)


def test_nan_and_infinity_spellings_are_invalid_not_dead_letters() -> None:
    for spelling in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        value = b'{"request_id": "r-1", "tenant_id": "t", "prompt": "p", "guidance_scale": ' + spelling + b"}"
        rejection = _rejection(value)
        assert (rejection.error.code, rejection.field) == ("invalid_field", "guidance_scale")


def test_too_many_metadata_entries_is_invalid() -> None:
    rejection = _rejection(_record(metadata={f"k{i}": "v" for i in range(33)}))
    assert (rejection.error.code, rejection.field) == ("invalid_field", "metadata")


def test_first_error_picks_code_and_field_and_message_lists_five_then_counts() -> None:
    rejection = _rejection(_record(a=1, b=2, c=3, d=4, e=5, f=6, g=7))
    assert rejection.error.code == "unknown_field"
    assert rejection.field == "a"
    assert rejection.error.message.endswith("; and 2 more")
    assert rejection.error.message.count("Extra inputs are not permitted") == 5


def test_schema_version_wins_the_code_even_when_not_first() -> None:
    rejection = _rejection(_record(schema_version=2, width=3))
    assert rejection.error.code == "unsupported_schema_version"


# --- What a rejection echoes ------------------------------------------------------------------------------


def test_rejection_echoes_request_id_valid_tenant_and_valid_metadata() -> None:
    rejection = _rejection(_record(width=3, metadata={"order": "42"}))
    assert rejection.request_id == "r-1"
    assert rejection.tenant_id == "acme"
    assert rejection.metadata == {"order": "42"}


@pytest.mark.parametrize("tenant", [_DROP, None, "", "x" * 65, "has space", 12])
def test_unusable_tenant_is_not_echoed(tenant: Any) -> None:
    assert _rejection(_record(tenant_id=tenant)).tenant_id is None


def test_tenant_of_64_characters_is_echoed() -> None:
    assert _rejection(_record(tenant_id="t" * 64, width=3)).tenant_id == "t" * 64


@pytest.mark.parametrize(
    "metadata",
    [
        "text",
        ["a"],
        {"k": 1},
        {"k": "v" * 513},
        {"": "v"},
        {"k" * 65: "v"},
        {f"k{i}": "v" for i in range(33)},
    ],
)
def test_invalid_metadata_is_not_echoed_at_all(metadata: Any) -> None:
    rejection = _rejection(_record(metadata=metadata, width=3))
    assert rejection.metadata == {}


def test_tenant_with_a_trailing_newline_is_not_echoed() -> None:
    assert _rejection(_record(tenant_id="acme\n")).tenant_id is None


def test_integer_too_long_to_convert_is_not_json_rather_than_an_exception() -> None:
    value = b'{"request_id": "r-1", "seed": ' + b"9" * 5_000 + b"}"
    assert _dead_letter(value).code == "not_json"
