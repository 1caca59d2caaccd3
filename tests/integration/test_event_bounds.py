"""Everything the worker publishes stays under a bound it knows, never echoes client keys raw, and a publish the
broker refuses for good ends in an answer (or a dead letter) instead of blocking the partition forever: a real
worker against the real broker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.kafka.clients import client_options
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import CrashingPipeline, KafkaClient, request_body

LIMIT = 1_048_576

Send = Callable[..., Awaitable[None]]


# --- Integration: the real broker, a real worker, the tiny model --------------------------------------------


@pytest.fixture
async def send_big(settings: Settings, kafka: KafkaClient) -> AsyncIterator[Send]:
    """A producer that may write records far over 1 MiB (tansu does not enforce message.max.bytes)."""
    producer = AIOKafkaProducer(**client_options(settings), max_request_size=8 * LIMIT)
    await producer.start()

    async def send(value: bytes, *, key: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        await producer.send_and_wait(settings.requests_topic, value=value, key=key, headers=headers or [])

    yield send
    await producer.stop()


async def _results(kafka: KafkaClient, count: int) -> dict[str, tuple[VideoResult, int]]:
    records = await kafka.read(kafka.settings.results_topic, count, timeout_s=60)
    return {r.key.decode(): (VideoResult.model_validate_json(r.value), len(r.value)) for r in records}


@pytest.mark.timeout(120)
async def test_a_request_with_a_huge_unknown_key_gets_a_small_rejection_and_the_partition_moves_on(
    settings: Settings, kafka: KafkaClient, start_worker: Any, send_big: Send
) -> None:
    await start_worker(settings)
    key = b"one-partition"  # all on one partition: the bad record sits between two good ones
    head = json.dumps(request_body("huge-key"))[:-1] + ', "'
    tail = '": 1}'
    name_length = settings.max_record_bytes - len(head) - len(tail)
    value = (head + "A" * name_length + tail).encode()
    assert len(value) == settings.max_record_bytes  # just inside the limit: parsed, not dead-lettered
    await kafka.send(request_body("before"), key=key)
    await send_big(value, key=key)
    await kafka.send(request_body("after"), key=key)

    results = await _results(kafka, 3)
    huge, size = results["huge-key"]
    assert huge.status == "rejected" and huge.error is not None
    assert huge.error.code == "unknown_field"
    assert huge.error.field == f"unknown field #8 (a {name_length}-character name)"
    assert size < 2_048
    assert results["before"][0].status == results["after"][0].status == "completed"
    assert await kafka.wait_committed(3) == 3


async def test_a_dead_letter_with_huge_headers_is_a_stub_and_the_partition_moves_on(
    settings: Settings, kafka: KafkaClient, start_worker: Any, send_big: Send
) -> None:
    await start_worker(settings)
    key = b"one-partition"
    value = b"not json " + b"x" * (settings.max_record_bytes - 100)
    headers = [("origin", b"test"), ("bulk", b"h" * 1_100_000)]
    await send_big(value, key=key, headers=headers)
    await kafka.send(request_body("after"), key=key)

    dead = (await kafka.read(settings.dlq_topic, 1, timeout_s=60))[0]
    found = dict(dead.headers)
    assert found["vidgen-error-code"] == b"not_json"
    assert found["vidgen-omitted"] == b"value,headers"
    original = len(key) + len(value) + sum(len(name) + len(header) for name, header in headers)
    assert found["vidgen-original-bytes"] == str(original).encode()
    assert found["vidgen-original-topic"] == settings.requests_topic.encode()
    assert {"vidgen-original-partition", "vidgen-original-offset", "vidgen-worker-id"} <= found.keys()
    assert "bulk" not in found and "origin" not in found  # over their own bound: not copied
    assert dead.key == key and len(dead.value) < 1_024
    assert (await _results(kafka, 1))["after"][0].status == "completed"
    assert await kafka.wait_committed(2) == 2


async def test_a_record_far_over_the_limit_is_dead_lettered_as_a_stub_and_the_partition_moves_on(
    settings: Settings, kafka: KafkaClient, start_worker: Any, send_big: Send
) -> None:
    await start_worker(settings)
    key = b"one-partition"
    value = b"x" * (settings.max_record_bytes * 2 + 500_000)
    await send_big(value, key=key, headers=[("origin", b"test")])
    await kafka.send(request_body("after"), key=key)

    dead = (await kafka.read(settings.dlq_topic, 1, timeout_s=60))[0]
    found = dict(dead.headers)
    assert found["vidgen-error-code"] == b"record_too_large"
    assert found["vidgen-omitted"] == b"value"
    assert found["vidgen-original-bytes"] == str(len(key) + len(value) + len("origin") + 4).encode()
    assert found["origin"] == b"test" and dead.key == key  # small key and headers are kept
    assert len(dead.value) < 1_024
    assert (await _results(kafka, 1))["after"][0].status == "completed"
    assert await kafka.wait_committed(2) == 2


async def test_a_huge_hostile_key_is_left_out_of_the_dead_letter_and_the_trace(
    settings: Settings,
    kafka: KafkaClient,
    start_worker: Any,
    send_big: Send,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    await start_worker(settings, tracer=provider.get_tracer("test"))
    key = b"\x1b[2J\xe2\x80\xae" + b"K" * 5_000
    await send_big(b"x" * (settings.max_record_bytes + 1), key=key)
    await kafka.send(request_body("after"))

    dead = (await kafka.read(settings.dlq_topic, 1, timeout_s=60))[0]
    assert (dead.key, dict(dead.headers)["vidgen-omitted"]) == (None, b"value,key")
    assert await kafka.wait_committed(2) == 2
    process = [span for span in exporter.get_finished_spans() if span.name == f"process {settings.requests_topic}"]
    keys = {(span.attributes or {}).get("messaging.kafka.message.key") for span in process}
    assert len(process) == 2 and keys == {None, "after"}


async def test_a_retry_copy_refused_for_good_ends_in_a_failed_result_and_a_dead_letter(
    settings: Settings, kafka: KafkaClient, start_worker: Any, make_renderer: Any, send_big: Send
) -> None:
    """The retry-topic copy carries the original headers; over the producer's limit it is refused for good
    (MessageSizeTooLargeError, not retriable), so the request fails for good at once instead of retrying forever."""
    once = settings.model_copy(update={"retry_attempts": 1, "retry_topic_rounds": 1})
    await start_worker(once, renderer=make_renderer(CrashingPipeline()))
    key = b"one-partition"
    request = json.dumps(request_body("crash-big", prompt="please crash")).encode()
    await send_big(request, key=key, headers=[("bulk", b"h" * 2_200_000)])
    await kafka.send(request_body("after"), key=key)

    results = await _results(kafka, 2)
    crash = results["crash-big"][0]
    assert crash.status == "failed" and crash.error is not None
    assert (crash.error.code, crash.error.retryable) == ("render_failed", True)
    assert results["after"][0].status == "completed"
    dead = (await kafka.read(settings.dlq_topic, 1, timeout_s=60))[0]
    found = dict(dead.headers)
    assert (found["vidgen-error-code"], found["vidgen-omitted"]) == (b"render_failed", b"value,headers")
    assert await kafka.wait_committed(2) == 2
