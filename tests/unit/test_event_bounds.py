"""Everything the worker publishes stays under a bound it knows and never echoes client keys raw, and a publish the
broker refuses for good ends in a fallback: the pure rules and the publisher against a refusing producer. The same
guarantees against the real broker are in tests/integration/test_event_bounds.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import annotated_types
import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from consumer.core.dlq import MAX_KEPT_HEADERS_BYTES, MAX_KEPT_KEY_BYTES, dead_letter_copy
from consumer.core.event_bounds import MAX_ERROR_FIELD_CHARS, MAX_ERROR_MESSAGE_CHARS, shown
from consumer.core.intake import Rejection, parse_request
from consumer.core.results import Identity, completed, failed, rejected, undeliverable
from consumer.core.sanitize import visible
from consumer.errors import InvalidRequest, PublishRefused, StorageError
from consumer.kafka.clients import record_bytes
from consumer.kafka.worker_publisher import WorkerPublisher, is_transient
from consumer.settings import Settings
from schemas.events import Timings, VideoInfo, VideoRequest, VideoResult

LIMIT = 1_048_576
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ME = Identity(worker_id="w1", model="tiny")
VALID: dict[str, Any] = {"request_id": "r-1", "tenant_id": "acme", "prompt": "a red shoe on a table"}
# Keys a client may send that must never reach a result: escape sequences, bidi override, line separator, NUL, huge.
UNSAFE_KEYS = ["\x1b[31mred", "evil\u202ekey", "line\u2028break", "nul\x00key", "K" * 1_048_000]
UNSAFE_CHARS = ("\x1b", "\u202e", "\u2028", "\x00")


def _rejection(data: dict[str, Any] | bytes) -> Rejection:
    value = data if isinstance(data, bytes) else json.dumps(data).encode()
    outcome = parse_request(value, max_bytes=10 * LIMIT)
    assert isinstance(outcome, Rejection), outcome
    return outcome


def _assert_not_echoed(text: str, key: str) -> None:
    assert key not in text
    assert not any(char in text for char in UNSAFE_CHARS)


# --- Keys are named safely, never echoed (finding 11) ----------------------------------------------------


@pytest.mark.parametrize("key", UNSAFE_KEYS, ids=["esc", "rlo", "u2028", "nul", "huge"])
def test_an_unknown_key_is_named_by_position_never_echoed(key: str) -> None:
    rejection = _rejection({**VALID, key: 1})
    assert rejection.error.code == "unknown_field"
    assert rejection.field == f"unknown field #4 (a {len(key)}-character name)"
    assert rejection.error.message == f"{rejection.field}: Extra inputs are not permitted"
    for text in (rejection.error.message, rejection.field):
        _assert_not_echoed(text, key)


def test_a_plain_unknown_key_is_named_as_it_is() -> None:
    rejection = _rejection({**VALID, "num_frame": 9})
    assert (rejection.error.code, rejection.field) == ("unknown_field", "num_frame")


@pytest.mark.parametrize("key", UNSAFE_KEYS[:4], ids=["esc", "rlo", "u2028", "nul"])
def test_a_metadata_key_in_a_validation_error_is_named_by_position(key: str) -> None:
    rejection = _rejection({**VALID, "metadata": {"fine": "v", key: 5}})
    assert rejection.field == f"metadata.key #2 (a {len(key)}-character name)"
    assert rejection.error.message.startswith(f"{rejection.field}: Input should be a valid string")
    _assert_not_echoed(rejection.error.message, key)


def test_a_huge_metadata_key_is_named_by_position() -> None:
    key = "K" * 100_000
    rejection = _rejection({**VALID, "metadata": {key: "v"}})
    assert rejection.field == "metadata.key #1 (a 100000-character name).[key]"
    assert len(rejection.error.message) < 200


def test_a_metadata_value_error_names_an_unusual_key_by_position() -> None:
    rejection = _rejection({**VALID, "metadata": {"order id": "bad\x1b"}})
    assert rejection.field == "metadata.key #1 (a 8-character name)"
    assert "order id" not in rejection.error.message


def test_a_rejection_echoes_only_metadata_that_passes_the_sanitising_rule() -> None:
    for metadata in ({"k": "\x1b[31mred"}, {"k\u202e": "v"}, {"k": "a\u2028b"}):
        assert _rejection({**VALID, "width": 3, "metadata": metadata}).metadata == {}
    # A lone surrogate spelled as a JSON escape passes the contract; it must not reach (and break) the result.
    value = b'{"request_id": "r-1", "tenant_id": "t", "prompt": "p", "width": 3, "metadata": {"k": "\\ud800"}}'
    rejection = _rejection(value)
    assert rejection.metadata == {}
    rejected(rejection, received_at=NOW, identity=ME).model_dump_json()


def test_error_text_in_a_result_is_bounded_and_never_carries_control_or_invisible_characters() -> None:
    request = VideoRequest(**VALID)
    error = StorageError("S3 said " + "x" * 5_000_000 + "\x1b[2J\u202e\ud800\u2028 end")
    error.field = "f" * 10_000 + "\x1b"
    result = failed(request, error, timings=Timings(received_at=NOW, completed_at=NOW), attempt=1, identity=ME)
    assert result.error is not None
    assert len(result.error.message) <= 1_000 and result.error.message.startswith("S3 said xxx")
    assert result.error.field is not None and len(result.error.field) <= 200
    for text in (result.error.message, result.error.field):
        assert not any(char in text for char in (*UNSAFE_CHARS, "\ud800"))
    result.model_dump_json()


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=3_000), st.integers(60, 2_000))
def test_shown_text_is_within_its_limit_and_visible(text: str, limit: int) -> None:
    out = shown(text, limit)
    assert len(out) <= limit
    assert visible(out) == out
    out.encode("utf-8")  # no lone surrogate left
    if len(visible(text)) <= limit:
        assert out == visible(text)


# --- Every result fits the smallest bound a worker may be configured with ----------------------------------

SMALLEST_BOUND = next(
    rule.ge for rule in Settings.model_fields["max_event_bytes"].metadata if isinstance(rule, annotated_types.Ge)
)
# The JSON writer spells a control character as \u001f: 6 bytes for 1 character, the most any character takes.
# (Accepted metadata cannot hold one, but the contract alone allows it, so the bound does not lean on sanitising.)
WIDEST = "\x1f"
# A 4-byte UTF-8 character: the widest that survives `shown` in error text.
WIDE = "\U0001f600"
# Headers the publisher adds: traceparent, and what OpenTelemetry's own limits allow tracestate and baggage.
TRACE_HEADERS = [("traceparent", b"0" * 55), ("tracestate", b"t" * 512), ("baggage", b"b" * 8_192)]
# Settings and infrastructure, not clients, choose these; generous sizes (a presigned URL with an STS session token
# is ~2 KB; S3 keys are at most 1,024 bytes; PATH_MAX is 4,096).
BIG_WORKER = Identity(worker_id="w" * 255, model="/m" * 2_048)
BIG_VIDEO = VideoInfo(
    uri="s3://" + "b" * 63 + "/" + "k" * 1_024,
    url="https://" + "u" * 4_096,
    url_expires_at=NOW,
    poster_uri="s3://" + "b" * 63 + "/" + "k" * 1_024,
    poster_url="https://" + "u" * 4_096,
    bytes=2**62,
    sha256="0" * 64,
    width=1024,
    height=1024,
    num_frames=49,
    fps=60,
    duration_s=49 / 60,
)
WORST_REQUEST = VideoRequest(
    request_id="r" * 128,
    tenant_id="t" * 64,
    prompt="p",
    metadata={f"{index:02d}" + WIDEST * 62: WIDEST * 512 for index in range(32)},
)
FULL_TIMINGS = Timings(
    received_at=NOW,
    render_started_at=NOW,
    render_finished_at=NOW,
    completed_at=NOW,
    render_ms=2**62,
    encode_ms=2**62,
    upload_ms=2**62,
)


def _published_bytes(result: VideoResult) -> int:
    return record_bytes(result.request_id.encode(), result.model_dump_json().encode("utf-8"), TRACE_HEADERS)


def _worst_results() -> dict[str, VideoResult]:
    error = StorageError(WIDE * 10**6, field=WIDE * 10**4)
    done = completed(
        WORST_REQUEST,
        video=BIG_VIDEO,
        cache_hit=True,
        timings=FULL_TIMINGS,
        attempt=2**31,
        identity=BIG_WORKER,
        memory_mode="sequential_offload",
    )
    rejection = Rejection(
        "r" * 128, "t" * 64, dict(WORST_REQUEST.metadata), InvalidRequest(WIDE * 10**6, field=WIDE * 10**4)
    )
    return {
        "completed": done,
        "failed": failed(WORST_REQUEST, error, timings=FULL_TIMINGS, attempt=2**31, identity=BIG_WORKER),
        "rejected": rejected(rejection, received_at=NOW, identity=BIG_WORKER),
        "undeliverable": undeliverable(done, PublishRefused(WIDE * 10**6)),
    }


@pytest.mark.parametrize("kind", ["completed", "failed", "rejected", "undeliverable"])
def test_the_largest_possible_result_fits_the_smallest_allowed_bound(kind: str) -> None:
    """Every field at its contract maximum in the widest characters: the worst case, not a sample."""
    result = _worst_results()[kind]
    assert len(result.metadata) in (0, 32)
    if result.error is not None:
        assert len(result.error.message) == MAX_ERROR_MESSAGE_CHARS
        assert result.error.field is None or len(result.error.field) == MAX_ERROR_FIELD_CHARS
    assert _published_bytes(result) <= SMALLEST_BOUND


def test_a_minimal_result_replaces_a_refused_one_without_metadata_or_video() -> None:
    done = _worst_results()["completed"]
    minimal = undeliverable(done, PublishRefused("results refused the record: MessageSizeTooLargeError: too big"))
    assert (minimal.request_id, minimal.tenant_id, minimal.status) == (done.request_id, done.tenant_id, "failed")
    assert minimal.error is not None and (minimal.error.code, minimal.error.retryable) == ("publish_refused", False)
    assert minimal.error.message.startswith("the completed result of this request could not be published: results")
    assert (minimal.metadata, minimal.video) == ({}, None)
    assert _published_bytes(minimal) < 16_384


# --- Dead-letter copies ------------------------------------------------------------------------------------

PROVENANCE = [("vidgen-error-code", b"not_json"), ("vidgen-original-offset", b"7")]


def _consumed(value: bytes | None, *, key: bytes | None = b"k", headers: list[tuple[str, bytes]] | None = None) -> Any:
    return ConsumerRecord(
        topic="video.requests",
        partition=0,
        offset=7,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers or [],
    )


def test_a_dead_letter_that_fits_is_the_whole_original_plus_provenance() -> None:
    copy = dead_letter_copy(
        _consumed(b"[1]", headers=[("origin", b"x")]), PROVENANCE, max_bytes=LIMIT, measure=record_bytes
    )
    assert (copy.key, copy.value, copy.omitted) == (b"k", b"[1]", ())
    assert copy.headers == [("origin", b"x"), *PROVENANCE]


def test_a_dead_letter_is_whole_up_to_the_bound_and_a_stub_one_byte_past_it() -> None:
    empty = record_bytes(b"k", b"", PROVENANCE)
    at_bound = dead_letter_copy(
        _consumed(b"x" * (LIMIT - empty - 3)), PROVENANCE, max_bytes=LIMIT, measure=record_bytes
    )
    assert record_bytes(at_bound.key, at_bound.value, at_bound.headers) <= LIMIT
    assert at_bound.omitted == ()
    past = dead_letter_copy(_consumed(b"x" * (LIMIT - empty + 3)), PROVENANCE, max_bytes=LIMIT, measure=record_bytes)
    assert past.omitted == ("value",)
    assert json.loads(past.value or b"") == {"omitted": ["value"], "original_bytes": 1 + LIMIT - empty + 3}


@pytest.mark.parametrize(
    ("key_bytes", "header_bytes", "omitted"),
    [
        (MAX_KEPT_KEY_BYTES, MAX_KEPT_HEADERS_BYTES, ("value",)),
        (MAX_KEPT_KEY_BYTES + 1, MAX_KEPT_HEADERS_BYTES, ("value", "key")),
        (MAX_KEPT_KEY_BYTES, MAX_KEPT_HEADERS_BYTES + 1, ("value", "headers")),
        (10**6, 10**6, ("value", "key", "headers")),
    ],
)
def test_a_stub_keeps_the_key_and_headers_only_within_their_own_bounds(
    key_bytes: int, header_bytes: int, omitted: tuple[str, ...]
) -> None:
    key, headers = b"k" * key_bytes, [("h", b"v" * (header_bytes - 1))]
    copy = dead_letter_copy(
        _consumed(b"x" * LIMIT, key=key, headers=headers), PROVENANCE, max_bytes=LIMIT, measure=record_bytes
    )
    assert copy.omitted == omitted
    assert copy.key == (None if "key" in omitted else key)
    kept = [] if "headers" in omitted else headers
    original = key_bytes + LIMIT + header_bytes
    assert copy.headers == [
        *kept,
        *PROVENANCE,
        ("vidgen-omitted", ",".join(omitted).encode()),
        ("vidgen-original-bytes", str(original).encode()),
    ]
    assert record_bytes(copy.key, copy.value, copy.headers) < MAX_KEPT_KEY_BYTES + MAX_KEPT_HEADERS_BYTES + 1_024


def test_a_stub_can_be_asked_for_when_the_broker_refused_a_copy_that_fit() -> None:
    copy = dead_letter_copy(_consumed(b"[1]", key=None), PROVENANCE, max_bytes=LIMIT, measure=record_bytes, stub=True)
    assert (copy.key, copy.omitted) == (None, ("value",))


# --- Publishing: transient errors are ridden out, the rest fall back -----------------------------------------


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (MessageSizeTooLargeError(), False),
        (RecordListTooLargeError(), False),
        (TopicAuthorizationFailedError(), False),
        (KafkaError("Unexpected error during batch delivery"), False),
        (KafkaConnectionError(), True),
        (RequestTimedOutError(), True),
        (NotLeaderForPartitionError(), True),
        (KafkaTimeoutError(), True),
        (ValueError("not from Kafka"), False),
    ],
)
def test_only_transient_publish_errors_are_retried(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


class RefusingProducer:
    """Stands in for the producer in these unit tests: refuses (for good) records over `limit` bytes, fails the
    first `flaky` sends with a transient error, and keeps what it accepted."""

    def __init__(self, *, limit: int, flaky: int = 0) -> None:
        self.limit = limit
        self.flaky = flaky
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        if self.flaky:
            self.flaky -= 1
            raise KafkaConnectionError("connection lost")
        if record_bytes(key, value, headers) > self.limit:
            raise MessageSizeTooLargeError()
        self.sent.append((topic, key, value, headers))


def _publisher(producer: RefusingProducer) -> WorkerPublisher:
    return WorkerPublisher(producer, Settings(worker_id="w1", max_event_bytes=LIMIT))  # type: ignore[arg-type]


async def test_a_refused_result_is_replaced_by_a_minimal_failed_one() -> None:
    producer = RefusingProducer(limit=20_000, flaky=2)
    result = _worst_results()["completed"]
    await _publisher(producer).result(result)
    [(topic, key, value, _)] = producer.sent
    published = VideoResult.model_validate_json(value or b"")
    assert (topic, key) == ("video.results", result.request_id.encode())
    assert published.error is not None and (published.status, published.error.code) == ("failed", "publish_refused")


async def test_a_result_refused_even_as_a_minimal_one_raises_rather_than_loops() -> None:
    producer = RefusingProducer(limit=100)
    with pytest.raises(PublishRefused, match="MessageSizeTooLargeError"):
        await _publisher(producer).result(_worst_results()["rejected"])
    assert producer.sent == []


async def test_a_dead_letter_the_broker_refuses_goes_again_as_a_stub() -> None:
    producer = RefusingProducer(limit=50_000)  # a broker whose limit is below the worker's bound
    record = _consumed(b"x" * 100_000, headers=[("origin", b"x")])
    await _publisher(producer).dead_letter(record, code="not_json", message="record value is not JSON")
    [(topic, key, value, headers)] = producer.sent
    assert (topic, key) == ("video.requests.dlq", b"k")
    assert dict(headers)["vidgen-omitted"] == b"value"
    assert dict(headers)["origin"] == b"x"
    assert json.loads(value or b"")["original_bytes"] == 1 + 100_000 + len("origin") + 1


async def test_a_refused_retry_copy_raises_for_the_caller_to_fail_the_request() -> None:
    producer = RefusingProducer(limit=1_000)
    with pytest.raises(PublishRefused):
        await _publisher(producer).retry_later(_consumed(b"x" * 2_000), headers=[])


async def test_the_dead_letter_message_header_is_cut_and_visible() -> None:
    producer = RefusingProducer(limit=LIMIT)
    await _publisher(producer).dead_letter(_consumed(b"{"), code="not_json", message="bad \x1b[2J" + "m" * 5_000)
    message = dict(producer.sent[0][3])["vidgen-error-message"].decode()
    assert len(message) <= MAX_ERROR_MESSAGE_CHARS and "\x1b" not in message and "<U+001B>" in message
