"""Cancels and deadlines against the real broker, S3 server and an in-process worker: commands published to the
control topic as any producer would, requests to the requests topic, answers read from the results topic."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.core.clock import utc_now
from consumer.object_store import open_s3_client
from consumer.settings import Settings
from producer_examples.cancel_request import cancel_main
from producer_examples.watch_request import watch_main
from schemas.events import VideoControl, VideoResult
from tests.support import KafkaClient, SlowPipeline, metric, request_body, until


async def _cancel(kafka: KafkaClient, request_id: str, *, tenant: str = "shop-1") -> None:
    command = VideoControl(action="cancel", request_id=request_id, tenant_id=tenant, requested_at=utc_now())
    await kafka.producer.send_and_wait(
        kafka.settings.control_topic, key=request_id.encode(), value=command.model_dump_json().encode()
    )


async def _objects(settings: Settings) -> list[str]:
    async with open_s3_client(settings) as s3:
        listed = await s3.list_objects_v2(Bucket=settings.s3_bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _stored(result: VideoResult) -> list[str]:
    """The object keys a completed result names (its MP4 and poster)."""
    assert result.video is not None
    return sorted(uri.split("/", 3)[3] for uri in (result.video.uri, result.video.poster_uri))


def _failed_with(result: VideoResult, code: str, *, rendered: bool = False) -> None:
    assert result.status == "failed" and result.error is not None, result
    assert (result.error.code, result.error.retryable) == (code, False)
    assert result.video is None and (result.timings.render_started_at is not None) == rendered


async def test_a_cancel_answers_a_queued_request_at_once_and_stops_a_rendering_one_at_the_next_step(
    settings: Settings,
    kafka: KafkaClient,
    start_worker,
    make_renderer,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    settings = settings.model_copy(update={"max_inflight_jobs": 1})  # one render slot: the others queue
    worker = await start_worker(
        settings, renderer=make_renderer(SlowPipeline(step_s=0.3)), tracer=provider.get_tracer("test")
    )
    await kafka.send(request_body("long", num_inference_steps=40))  # 12 s of denoising
    await kafka.send(request_body("queued", prompt="a blue mug"))
    await kafka.send(request_body("next", prompt="a green lamp"))

    async def all_fetched_and_long_rendering() -> bool:
        rendering = any(seen == "long" and step >= 1 for seen, step, _ in worker.progress)
        return rendering and await metric(worker.http_port, "vidgen_records_fetched_total") >= 3

    await until(all_fetched_and_long_rendering)

    await _cancel(kafka, "queued")
    first = await kafka.results(1)
    assert list(first) == ["queued"]  # answered while `long` still renders
    _failed_with(first["queued"], "cancelled")

    cancelled_at = time.monotonic()
    await _cancel(kafka, "long")
    stopped = await kafka.results(2)  # `next` can only render once `long` has given up the render slot
    stopped_s = time.monotonic() - cancelled_at
    _failed_with(stopped["long"], "cancelled", rendered=True)
    assert stopped_s < 5, f"the render went on for {stopped_s:.1f} s after its cancel (of 12 s)"
    results = await kafka.results(3)
    assert max(step for request_id, step, _ in worker.progress if request_id == "long") < 40
    assert results["next"].status == "completed"  # the freed slot went to the next request

    assert await _objects(settings) == _stored(results["next"])  # nothing of the cancelled ones was uploaded
    assert await metric(worker.http_port, 'vidgen_cancellations_total{stage="queued"}') == 1
    assert await metric(worker.http_port, 'vidgen_cancellations_total{stage="rendering"}') == 1
    assert await kafka.wait_committed(3) == 3
    events = {
        span.attributes["messaging.kafka.message.key"]: [dict(event.attributes or {}) for event in span.events]
        for span in exporter.get_finished_spans()
        if span.name.startswith("process ")
    }
    assert {"vidgen.cancel.stage": "rendering"} in events["long"]
    assert {"vidgen.cancel.stage": "queued"} in events["queued"]


async def test_a_cancel_issued_before_its_request_and_the_worker_is_applied_when_the_request_comes(
    settings: Settings, kafka: KafkaClient, start_worker, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI: `vidgen cancel` publishes the command, `vidgen watch` shows the answer."""
    positioned = asyncio.Event()
    loop = asyncio.get_running_loop()
    watching = asyncio.create_task(
        asyncio.to_thread(
            watch_main,
            ["early", "--timeout", "90"],
            settings=settings,
            on_positioned=lambda: loop.call_soon_threadsafe(positioned.set),
        )
    )
    await asyncio.wait_for(positioned.wait(), 30)
    assert await asyncio.to_thread(cancel_main, ["early", "--tenant", "shop-1"], settings=settings) == 0
    await kafka.send(request_body("early"))  # published after its cancel, for a worker that starts after both

    worker = await start_worker(settings, burst=True)
    assert await worker.finished() == 0

    assert await asyncio.wait_for(watching, 60) == 1  # `vidgen watch` exits 1 on a failed result
    out = capsys.readouterr().out
    result = VideoResult.model_validate_json(out[out.index("{") :])
    _failed_with(result, "cancelled")
    assert [step for request_id, step, _ in worker.progress if request_id == "early"] == []  # never rendered
    assert await kafka.wait_committed(1) == 1


async def test_a_cancel_naming_another_tenant_or_unreadable_is_ignored_and_one_after_the_answer_changes_nothing(
    settings: Settings, kafka: KafkaClient, start_worker
) -> None:
    await _cancel(kafka, "mine", tenant="intruder")  # another tenant trying to cancel shop-1's request
    await kafka.producer.send_and_wait(settings.control_topic, key=b"mine", value=b"not a command")
    await kafka.send(request_body("mine"))
    worker = await start_worker(settings)
    result = (await kafka.results(1))["mine"]
    assert result.status == "completed"
    assert await metric(worker.http_port, 'vidgen_control_ignored_total{reason="wrong_tenant"}') == 1
    assert await metric(worker.http_port, 'vidgen_control_ignored_total{reason="invalid"}') == 1

    await _cancel(kafka, "mine")  # too late: it was answered and committed
    await kafka.send(request_body("later", prompt="a yellow chair"))
    await kafka.results(2)
    records, _ = await kafka.read_to_end(settings.results_topic)
    assert [VideoResult.model_validate_json(r.value).status for r in records if r.key == b"mine"] == ["completed"]


async def test_a_deadline_that_passes_while_queued_answers_expired_and_uploads_nothing(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    settings = settings.model_copy(update={"max_inflight_jobs": 1})
    await start_worker(settings, renderer=make_renderer(SlowPipeline(step_s=0.5)))
    await kafka.send(request_body("ahead", num_inference_steps=6))  # holds the render slot for 3 s
    await kafka.send(request_body("hurried", prompt="a blue mug", deadline=_in(1.0)))
    await kafka.send(request_body("patient", prompt="a green lamp", deadline=_in(600)))
    results = await kafka.results(3)

    _failed_with(results["hurried"], "expired")
    assert "deadline" in results["hurried"].error.message  # type: ignore[union-attr]
    assert results["ahead"].status == results["patient"].status == "completed"
    assert await _objects(settings) == sorted(_stored(results["ahead"]) + _stored(results["patient"]))
    assert await kafka.wait_committed(3) == 3


def _in(seconds: float) -> str:
    return (utc_now() + timedelta(seconds=seconds)).isoformat()
