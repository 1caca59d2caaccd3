"""Properties of the untrusted-input path: intake never raises and classifies every input by the contract's
rules; sanitising and the content policy raise nothing but their own rejections on any text."""

from __future__ import annotations

import asyncio
import json
import re
import string
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from consumer.core.intake import DeadLetter, Rejection, parse_request
from consumer.core.moderation import ContentPolicy
from consumer.core.sanitize import check_opaque_text, clean_text, sanitize_request
from consumer.errors import ContentPolicyViolation, InvalidRequest, UnsafeText
from schemas.events import ID_PATTERN, VideoRequest

LIMIT = 1_048_576
REJECTION_CODES = {"unsupported_schema_version", "missing_field", "unknown_field", "invalid_field"}
FIELDS = sorted(VideoRequest.model_fields)
_ID = re.compile(ID_PATTERN)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point, lone surrogates included (st.characters() leaves them out unless asked).
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00\t\n\r\x1b\u202e\u200b"))
any_text = st.text(any_char, max_size=60)
# Integers stay below Python's 4300-digit int/str conversion limit, past which json.dumps itself refuses them
# (test_intake.py feeds intake such a record as raw bytes).
big_ints = st.integers(min_value=-(10**300), max_value=10**300)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    big_ints,
    st.floats(allow_nan=True, allow_infinity=True),  # json.dumps spells these NaN, Infinity, -Infinity
    st.text(max_size=30),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)
plausible = {
    "schema_version": st.one_of(st.just(1), junk),
    # The contract's own pattern: `$` lets Hypothesis add a trailing newline, the edge intake gets wrong.
    "request_id": st.one_of(st.from_regex(ID_PATTERN), st.from_regex(r"\A[A-Za-z0-9._:-]{1,130}\Z"), junk),
    "tenant_id": st.one_of(st.from_regex(ID_PATTERN), st.from_regex(r"\A[A-Za-z0-9._:-]{1,70}\Z"), junk),
    "prompt": st.one_of(st.text(min_size=1, max_size=40), junk),
    "negative_prompt": st.one_of(st.text(max_size=20), junk),
    "image_url": st.one_of(st.sampled_from(["s3://bucket-a/k.png", "https://x.example/a.png", "ftp://x/a"]), junk),
    "width": st.one_of(st.sampled_from([256, 512, 520, 1024, 2048]), junk),
    "height": st.one_of(st.sampled_from([256, 512, 1000]), junk),
    "num_frames": st.one_of(st.integers(-2, 60), junk),
    "guidance_scale": st.one_of(st.floats(allow_nan=True, allow_infinity=True), junk),
    "seed": st.one_of(big_ints, junk),
    "metadata": st.one_of(st.dictionaries(st.text(max_size=70), st.text(max_size=20), max_size=34), junk),
}
request_like = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries({}, optional=plausible),
    st.dictionaries(keys, junk, max_size=3),
)

no_surrogate = st.characters(exclude_categories=["Cs"])
clean_prompt = st.text(no_surrogate, min_size=1, max_size=80).filter(str.strip)
valid_requests: st.SearchStrategy[dict[str, Any]] = st.builds(
    dict,
    request_id=st.from_regex(r"\A[A-Za-z0-9._:-]{1,128}\Z"),
    tenant_id=st.from_regex(r"\A[A-Za-z0-9._:-]{1,64}\Z"),
    prompt=clean_prompt,
    negative_prompt=st.none() | st.text(no_surrogate, max_size=40),
    width=st.sampled_from(range(256, 1025, 16)),
    num_frames=st.integers(1, 49),
    guidance_scale=st.floats(1.0, 20.0),
    seed=st.none() | st.integers(0, 2**32 - 1),
    metadata=st.dictionaries(st.text(string.printable, min_size=1, max_size=64), st.text(max_size=40), max_size=5),
)
# A valid request with one field replaced by junk, or one junk key added: exercises every rejection path.
mutated = st.builds(lambda base, key, value: {**base, key: value}, valid_requests, keys, junk)


def _has_usable_request_id(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    request_id = data.get("request_id")
    return isinstance(request_id, str) and len(request_id) <= 128 and _ID.fullmatch(request_id) is not None


def _check_outcome(outcome: object) -> None:
    assert isinstance(outcome, VideoRequest | Rejection | DeadLetter)
    if isinstance(outcome, Rejection):
        assert outcome.error.code in REJECTION_CODES
        assert outcome.field is not None
        assert outcome.error.message.startswith(f"{outcome.field}: ")


@PROPERTY
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    _check_outcome(parse_request(value, max_bytes=LIMIT))


@PROPERTY
@given(st.one_of(junk, request_like, mutated))
def test_arbitrary_json_is_a_dead_letter_exactly_when_request_id_is_unusable(data: Any) -> None:
    outcome = parse_request(json.dumps(data).encode(), max_bytes=LIMIT)
    event(type(outcome).__name__)
    _check_outcome(outcome)
    assert isinstance(outcome, DeadLetter) == (not _has_usable_request_id(data))
    if isinstance(outcome, Rejection):
        assert outcome.request_id == data["request_id"]


@PROPERTY
@given(st.integers(min_value=0, max_value=5_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_never_raises(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = '{"request_id": "r", "metadata": ' + opener * depth + "1" + closer * depth + "}"
    _check_outcome(parse_request(text.encode(), max_bytes=LIMIT))


@PROPERTY
@given(valid_requests)
def test_a_valid_request_round_trips(data: dict[str, Any]) -> None:
    """What intake returns for a contract-valid request is exactly the sanitised request, or its rejection."""
    request = VideoRequest.model_validate(data)
    again = parse_request(request.model_dump_json().encode(), max_bytes=LIMIT)
    try:
        assert again == sanitize_request(request)
    except UnsafeText as exc:
        assert isinstance(again, Rejection) and again.field == exc.field


@PROPERTY
@given(any_text)
def test_clean_text_raises_only_unsafe_text_and_is_idempotent(value: str) -> None:
    try:
        cleaned = clean_text(value, "prompt")
    except UnsafeText as exc:
        assert exc.code == "invalid_field"
        assert exc.message.startswith("prompt: ")
        return
    assert clean_text(cleaned, "prompt") == cleaned
    assert "\r" not in cleaned
    assert all(char in "\t\n" or not (char < " " or "\x7f" <= char <= "\x9f") for char in cleaned)


@PROPERTY
@given(any_text)
def test_opaque_check_raises_only_unsafe_text(value: str) -> None:
    try:
        check_opaque_text(value, "metadata.k")
    except UnsafeText as exc:
        assert exc.field == "metadata.k"


@PROPERTY
@given(any_text, any_text, st.dictionaries(any_text, any_text, max_size=3))
def test_sanitize_request_raises_only_invalid_request(prompt: str, negative: str, metadata: dict[str, str]) -> None:
    # model_construct: Python callers can build requests the JSON path would refuse (lone surrogates...).
    request = VideoRequest.model_construct(
        request_id="r", tenant_id="t", prompt=prompt, negative_prompt=negative, metadata=metadata
    )
    try:
        result = sanitize_request(request)
    except InvalidRequest as exc:
        assert exc.code == "invalid_field"
        return
    if result is not request:  # rewritten requests are validated again; untouched ones are returned as given
        assert result.prompt.strip() == result.prompt
        assert 1 <= len(result.prompt) <= 1000


_POLICY = ContentPolicy(["nude", "nud*", "gore video", "色情", "a", "x y"], fields=("prompt", "negative_prompt"))


@PROPERTY
@given(any_text, any_text)
def test_policy_raises_only_violations(prompt: str, negative: str) -> None:
    request = VideoRequest.model_construct(request_id="r", tenant_id="t", prompt=prompt, negative_prompt=negative)
    try:
        asyncio.run(_POLICY.check(request))
    except ContentPolicyViolation as exc:
        assert exc.code == "content_policy"
        assert exc.field in ("prompt", "negative_prompt")
        assert exc.message.startswith(f"{exc.field}: ")


@PROPERTY
@given(valid_requests, any_text, st.dictionaries(st.text(max_size=8), any_text, max_size=2))
def test_parse_then_sanitize_is_stable(data: dict[str, Any], prompt: str, metadata: dict[str, str]) -> None:
    """The pipeline the worker runs: a request that parses and sanitises comes out the same when its sanitised
    form is sent again, so retries and duplicates map to the same content key."""
    value = json.dumps({**data, "prompt": prompt or "x", "metadata": metadata}).encode()
    outcome = parse_request(value, max_bytes=LIMIT)
    assume(isinstance(outcome, VideoRequest))
    assert isinstance(outcome, VideoRequest)
    try:
        cleaned = sanitize_request(outcome)
    except UnsafeText as exc:
        assert exc.field == "prompt" or exc.field.startswith("metadata")
        return
    again = parse_request(cleaned.model_dump_json().encode(), max_bytes=LIMIT)
    assert isinstance(again, VideoRequest)
    assert sanitize_request(again) == cleaned
