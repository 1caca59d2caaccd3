"""CloudEvents headers of the records the worker writes, read back by the cloudevents SDK's own Kafka bindings (the
2.x core binding and the 1.x-style `cloudevents.v1.kafka`), unchanged; duplicates keep their id; dead letters carry
their own envelope; every result still fits the smallest event bound with its envelope."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import annotated_types
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.v1 import kafka as ce_kafka_v1
from opentelemetry.trace import NoOpTracer

from consumer.core.cloud_events import (
    DEAD_LETTER_TYPE,
    dead_letter_event,
    progress_event,
    result_event,
    without_envelope,
)
from consumer.core.dlq import dead_letter_copy
from consumer.kafka.clients import record_bytes
from consumer.kafka.record_publisher import RecordPublisher
from consumer.kafka.worker_publisher import WorkerPublisher
from consumer.settings import Settings
from schemas.events import Timings, VideoControl, VideoProgress, VideoResult
from tests.support import consumed

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
SOURCE = "urn:vidgen:test"
IDENTITY = {"worker_id": "w1", "model": "tiny"}
SMALLEST_BOUND = next(
    rule.ge for rule in Settings.model_fields["max_event_bytes"].metadata if isinstance(rule, annotated_types.Ge)
)


def _read(headers: list[tuple[str, bytes]], value: bytes, key: bytes = b"req-1") -> Any:
    """What a consumer using the SDK's Kafka binding gets from the record."""
    return ce_kafka.from_binary_event(ce_kafka.KafkaMessage(headers=dict(headers), key=key, value=value))


def _result(status: str = "completed") -> VideoResult:
    timings = Timings(received_at=NOW, completed_at=NOW)
    return VideoResult.model_validate(
        {"request_id": "req-1", "tenant_id": "shop-1", "status": status, "timings": timings} | IDENTITY
    )


def test_a_result_envelope_reads_back_with_both_sdk_bindings_and_the_body_unchanged() -> None:
    result = _result()
    value = result.model_dump_json().encode()
    headers = result_event(status="completed", tenant_id="shop-1", request_id="req-1", source=SOURCE, time=NOW)
    event = _read(headers, value)
    assert event.get_type() == "io.vidgen.video.completed"
    assert (event.get_source(), event.get_subject(), event.get_time()) == (SOURCE, "req-1", NOW)
    assert event.get_specversion() == "1.0" and event.get_datacontenttype() == "application/json"
    assert event.get_data() == json.loads(value)
    older = ce_kafka_v1.from_binary(ce_kafka_v1.KafkaMessage(dict(headers), b"req-1", value))
    assert older["type"] == "io.vidgen.video.completed" and older.get_data() == json.loads(value)
    assert {name for name, _ in headers} == {
        "ce_id",
        "ce_source",
        "ce_specversion",
        "ce_subject",
        "ce_time",
        "ce_type",
        "content-type",
    }


def test_a_duplicate_answer_keeps_its_id_and_different_answers_do_not_share_one() -> None:
    def ce_id(**changes: Any) -> bytes:
        fields = {"status": "completed", "tenant_id": "shop-1", "request_id": "req-1", "source": SOURCE, "time": NOW}
        return dict(result_event(**(fields | changes)))["ce_id"]

    assert ce_id() == ce_id(time=datetime(2027, 1, 1, tzinfo=UTC))  # answered again later, by another worker
    others = [ce_id(status="failed"), ce_id(tenant_id="shop-2"), ce_id(request_id="req-2"), ce_id()]
    assert len(set(others)) == 4


@pytest.mark.parametrize(("kind", "step"), [("started", 0), ("progress", 3)])
def test_progress_envelopes_are_typed_by_kind_and_keyed_by_attempt_and_step(kind: str, step: int) -> None:
    def progress(attempt: int) -> VideoProgress:
        fields = {"request_id": "req-1", "tenant_id": "t", "event": kind, "step": step, "total": 4, "percent": 0}
        return VideoProgress.model_validate(fields | {"attempt": attempt, "worker_id": "w", "at": NOW})

    headers = progress_event(progress(1), source=SOURCE)
    event = _read(headers, b'{"event": "x"}')
    assert event.get_type() == f"io.vidgen.video.{kind}" and event.get_subject() == "req-1"
    again = progress_event(progress(2), source=SOURCE)
    assert dict(again)["ce_id"] != dict(headers)["ce_id"]


def _consumed(value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
    return consumed("video.requests", 3, 41, value, headers=headers, key=b"req-1")


def _dead_letter_envelope(value: bytes | None) -> list[tuple[str, bytes]]:
    return dead_letter_event(
        topic="video.requests",
        partition=3,
        offset=41,
        code="not_json",
        value=value,
        request_id="req-1",
        source=SOURCE,
        time=NOW,
    )


def test_a_dead_letter_replaces_the_originals_envelope_and_declares_non_json_as_octets() -> None:
    original = [("ce_id", b"from-the-api"), ("ce_type", b"io.vidgen.video.requested"), ("traceparent", b"00-x")]
    value = b"\xff not json"
    copy = dead_letter_copy(
        _consumed(value, original),
        [("vidgen-error-code", b"not_json"), *_dead_letter_envelope(value)],
        max_bytes=SMALLEST_BOUND,
        measure=record_bytes,
    )
    names = [name for name, _ in copy.headers]
    assert names.count("ce_id") == 1 and "traceparent" in names
    event = _read(copy.headers, copy.value or b"")
    assert event.get_type() == DEAD_LETTER_TYPE and event.get_id() != "from-the-api"
    assert event.get_datacontenttype() == "application/octet-stream"
    assert dict(_dead_letter_envelope(b'{"a": 1}'))["content-type"] == b"application/json"
    assert without_envelope([("Content-Type", b"x"), ("CE_ID", b"y"), ("keep", b"z")]) == [("keep", b"z")]


def test_a_dead_letter_stub_says_its_value_is_json() -> None:
    envelope = _dead_letter_envelope(b"\xff")
    stub = dead_letter_copy(
        _consumed(b"\xff" * 10, []), envelope, max_bytes=SMALLEST_BOUND, measure=record_bytes, stub=True
    )
    event = _read(stub.headers, stub.value or b"")
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data()["omitted"] == ["value"]


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> SimpleNamespace:
        self.sent.append((topic, key, value, headers))
        return SimpleNamespace(partition=0, offset=len(self.sent) - 1)  # the record metadata the publishers log


async def test_the_publisher_puts_an_envelope_on_results_and_dead_letters() -> None:
    producer = _Producer()
    settings = Settings(worker_id="w1", event_source=SOURCE)
    publisher = WorkerPublisher(producer, settings, clock=lambda: NOW)  # type: ignore[arg-type]
    await publisher.result(_result("failed"))
    await publisher.dead_letter(_consumed(b"{}", [("ce_id", b"old")]), code="missing_request_id", message="m")
    (_, _, value, headers), (_, _, dead_value, dead_headers) = producer.sent
    event = _read(headers, value or b"")
    assert (event.get_type(), event.get_subject(), event.get_source()) == ("io.vidgen.video.failed", "req-1", SOURCE)
    dead = _read(dead_headers, dead_value or b"")
    assert (dead.get_type(), dead.get_subject()) == (DEAD_LETTER_TYPE, "req-1")


async def test_a_cancel_and_a_delete_of_one_job_are_two_events() -> None:
    """The job API cancels (`POST .../cancel`) and deletes (`DELETE`) with commands on one key: a consumer that
    de-duplicates on (source, id) must not drop the delete as a repeat of the cancel."""
    producer = _Producer()
    publisher = RecordPublisher(producer, tracer=NoOpTracer(), source=SOURCE, clock=lambda: NOW)  # type: ignore[arg-type]
    for action in ("cancel", "delete"):
        command = VideoControl(action=action, request_id="req-1", tenant_id="shop-1", requested_at=NOW)
        await publisher.publish("video.control", "req-1", command)
    cancel, delete = (_read(headers, value or b"") for _, _, value, headers in producer.sent)
    assert (cancel.get_type(), delete.get_type()) == (
        "io.vidgen.video.cancel_requested",
        "io.vidgen.video.delete_requested",
    )
    assert cancel.get_id() != delete.get_id()
    assert (cancel.get_subject(), delete.get_subject()) == ("req-1", "req-1")


def test_the_largest_possible_result_fits_the_smallest_bound_with_its_envelope() -> None:
    """Worst case: the longest request id, the largest source, tracing headers at OpenTelemetry's limits, and the
    largest result test_event_bounds works out (reused here through its measure, plus this envelope)."""
    from tests.unit.test_event_bounds import TRACE_HEADERS, _worst_results

    source = "u:" + "s" * 253
    for result in _worst_results().values():
        envelope = result_event(
            status=result.status, tenant_id=result.tenant_id, request_id=result.request_id, source=source, time=NOW
        )
        size = record_bytes(result.request_id.encode(), result.model_dump_json().encode(), TRACE_HEADERS + envelope)
        assert size <= SMALLEST_BOUND, result.status
