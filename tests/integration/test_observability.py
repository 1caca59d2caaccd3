"""Traces, logs, metrics and progress events of real jobs against the real broker and S3 server. Exporting traces
over OTLP, configured by the environment alone, is unit-tested in tests/unit/test_otlp_export.py."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.memory.admission import MemoryReading
from consumer.memory.probe import ScriptedProbe
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging
from producer_examples.watch_request import watch_main
from schemas.events import VideoProgress
from tests.support import KafkaClient, condition, metric, request_body

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()
GIB = 1 << 30


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging(fmt="json", level="INFO", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def _by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in finished}


async def test_one_trace_from_request_to_result_with_conventional_attributes(
    settings: Settings, kafka: KafkaClient, store: ObjectStore, start_worker, spans, json_logs
) -> None:
    provider, exporter = spans
    probe = ScriptedProbe(MemoryReading(free_bytes=8 * GIB, total_bytes=8 * GIB, device="scripted"))
    await start_worker(settings, tracer=provider.get_tracer("test"), memory_probe=probe)
    shoe = product_image(256, 256)
    key = upload_key(shoe, "shoe.png", prefix=settings.s3_key_prefix, tenant_id="shop-1")
    await store.put(key, shoe, content_type="image/png", metadata={})
    body = request_body("traced-1", image_url=f"s3://{settings.s3_bucket}/{key}")
    await kafka.send(body, headers=[("traceparent", TRACEPARENT)])
    [record] = await kafka.read(settings.results_topic, 1)
    # The request's span ends after its result is sent: on a busy machine the result can be read first.
    process_span = f"process {settings.requests_topic}"
    await condition(lambda: process_span in _by_name(tuple(exporter.get_finished_spans())))

    found = _by_name(tuple(exporter.get_finished_spans()))
    process = found[f"process {settings.requests_topic}"]
    names = {"admission wait", "download image", "render", "encode", "upload", f"send {settings.results_topic}"}
    assert names <= set(found)
    assert {format(span.context.trace_id, "032x") for span in found.values()} == {TRACE_ID}
    assert process.kind == SpanKind.CONSUMER and process.parent is not None
    assert format(process.parent.span_id, "016x") == PARENT_ID  # continues the producer's trace
    for name in names:
        assert found[name].parent is not None and found[name].parent.span_id == process.context.span_id, name
    assert process.attributes is not None
    expected = {
        "messaging.system": "kafka",
        "messaging.destination.name": settings.requests_topic,
        "messaging.consumer.group.name": settings.consumer_group,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.message.key": "traced-1",
    }
    assert expected.items() <= dict(process.attributes).items()
    assert "messaging.kafka.offset" in process.attributes
    send = found[f"send {settings.results_topic}"]
    assert send.kind == SpanKind.PRODUCER
    steps = [event for event in found["render"].events if event.name == "denoising step"]
    assert [event.attributes["step"] for event in steps if event.attributes] == [1, 2]
    header = dict(record.headers)["traceparent"].decode()
    assert header == f"00-{TRACE_ID}-{format(send.context.span_id, '016x')}-01"  # the result joins the trace

    captured = json_logs.getvalue()
    lines = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    job_lines = [line for line in lines if line.get("request_id") == "traced-1"]
    assert job_lines, captured
    for line in job_lines:
        assert line["trace_id"] == TRACE_ID and len(line["span_id"]) == 16
        assert (line["tenant_id"], line["topic"]) == ("shop-1", settings.requests_topic)
        assert isinstance(line["partition"], int) and isinstance(line["offset"], int)
        assert "red sneaker" not in json.dumps(line)  # no prompt text at INFO


async def test_failures_set_span_status_and_error_type_and_metrics_follow(
    settings: Settings, kafka: KafkaClient, start_worker, spans
) -> None:
    provider, exporter = spans
    worker = await start_worker(settings, tracer=provider.get_tracer("test"))
    await kafka.send(request_body("ok-1"))
    await kafka.results(1)
    assert await metric(worker.http_port, 'vidgen_jobs_total{error_code="",status="completed"}') == 1
    await kafka.send(request_body("bad-1", fps=99))
    await kafka.results(2)
    rejected = 'vidgen_jobs_total{error_code="invalid_field",status="rejected"}'
    assert await metric(worker.http_port, rejected) == 1

    def failed_spans() -> list[ReadableSpan]:  # a request's span ends after its result is sent: wait for it
        process = [s for s in exporter.get_finished_spans() if s.name.startswith("process ")]
        return [s for s in process if s.attributes and s.attributes.get("messaging.kafka.message.key") == "bad-1"]

    await condition(lambda: bool(failed_spans()))
    failed = failed_spans()
    assert failed[0].status.status_code == StatusCode.ERROR
    assert failed[0].attributes is not None and failed[0].attributes["error.type"] == "invalid_field"
    _, text = await _http_metrics(worker.http_port)
    assert 'vidgen_render_seconds_count{frames="5",resolution="sd"} 1.0' in text
    assert "vidgen_consumer_lag{" in text


async def _http_metrics(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        return response.status, await response.text()


async def test_progress_events_and_vidgen_watch(settings: Settings, kafka: KafkaClient, start_worker) -> None:
    chatty = settings.model_copy(update={"progress_events": True, "progress_interval_s": 0})
    await start_worker(chatty)
    positioned = threading.Event()
    argv = ["watched-1", "--timeout", "60"]
    watch = functools.partial(watch_main, argv, settings=chatty, on_positioned=positioned.set)
    watching = asyncio.create_task(asyncio.to_thread(watch))
    # The request is published only once the watcher reads from the topics' ends, so it cannot slip past.
    assert await asyncio.to_thread(positioned.wait, 30)
    await kafka.send(request_body("watched-1", num_inference_steps=3), headers=[("traceparent", TRACEPARENT)])
    assert await watching == 0
    records = await kafka.read(chatty.progress_topic, 6)
    events = [VideoProgress.model_validate_json(r.value) for r in records]
    # Each step, then one event per phase after the last step (issue 25): the percent is of the whole job.
    assert [(e.event, e.phase, e.step, e.total) for e in events] == [
        ("started", "preparing", 0, 3),
        ("progress", "denoising", 1, 3),
        ("progress", "denoising", 2, 3),
        ("progress", "decoding", 3, 3),
        ("progress", "encoding", 3, 3),
        ("progress", "uploading", 3, 3),
    ]
    percents = [e.percent for e in events]
    assert percents == sorted(percents) and percents[-1] < 100 and events[1].eta_s is not None
    assert {r.key for r in records} == {b"watched-1"}
    assert all(dict(r.headers)["traceparent"].startswith(f"00-{TRACE_ID}".encode()) for r in records)
