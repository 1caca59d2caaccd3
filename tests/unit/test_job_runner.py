"""Where a job's failure goes: retried in process, then the retry topic, then failed for good with a dead letter;
answered at once when retrying cannot help. The real `JobRunner` with a fake pipeline and publisher."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumer.core.job import Job
from consumer.core.job_events import RenderEnded
from consumer.core.lifecycle import Phase
from consumer.core.quotas import QuotaDecision
from consumer.core.retries import Delivery
from consumer.errors import ImageUrlForbidden, StorageError, VidgenError
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.job_runner import JobRunner
from schemas.events import VideoRequest
from tests.support import IDENTITY, FakePipeline, FakePublisher, consumed, request_body

TP = TopicPartition("video.requests", 0)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TRACEPARENT = b"00-" + b"7" * 32 + b"-" + b"8" * 16 + b"-01"


def _runner(outcomes: list[str | VidgenError], *, refuse_retry: bool = False, **overrides: Any) -> JobRunner:
    settings = Settings(retry_backoff_s=0.001, retry_topic_delay_s=30.0, **overrides)
    runner = JobRunner(
        settings=settings,
        publisher=FakePublisher(refuse_retry=refuse_retry),  # type: ignore[arg-type]
        pipeline=FakePipeline({"p": outcomes}),  # type: ignore[arg-type]
        identity=IDENTITY,
        metrics=Metrics(),
        clock=lambda: NOW,
    )
    return runner


def _job(delivery: Delivery | None = None) -> Job:
    """A job as the scheduler hands it to the runner: admitted."""
    body = request_body("r1", prompt="p")
    record = consumed(TP.topic, TP.partition, 7, body, headers=[("traceparent", TRACEPARENT)])
    job = Job(TP, record, VideoRequest.model_validate(body), NOW, delivery or Delivery())
    job.lifecycle.advance(Phase.ADMITTED)
    return job


def _seen(runner: JobRunner) -> tuple[FakePipeline, FakePublisher]:
    return runner._attempts._pipeline, runner._publisher  # type: ignore[return-value]


async def test_transient_failures_are_retried_in_process_then_go_to_the_retry_topic() -> None:
    runner = _runner([StorageError("S3 said 503")], retry_attempts=3, retry_topic_rounds=2)
    assert await runner.run(_job(), asyncio.Queue())
    pipeline, publisher = _seen(runner)
    assert pipeline.attempts == [("r1", 1), ("r1", 2), ("r1", 3)]
    [(record, headers)] = publisher.retries
    assert record.offset == 7 and publisher.results == publisher.dead_letters == []
    assert headers == [
        ("traceparent", TRACEPARENT),  # the trace travels along
        ("vidgen-attempt", b"4"),
        ("vidgen-retry-round", b"1"),
        ("vidgen-not-before-ms", str(NOW_MS + 30_000).encode()),
    ]


async def test_after_the_last_round_a_request_fails_for_good_with_a_dead_letter() -> None:
    runner = _runner([StorageError("S3 said 503")], retry_attempts=2, retry_topic_rounds=2)
    assert await runner.run(_job(Delivery(attempt=5, round=2)), asyncio.Queue())
    pipeline, publisher = _seen(runner)
    assert pipeline.attempts == [("r1", 5), ("r1", 6)]
    assert [code for _, code in publisher.dead_letters] == ["storage_unavailable"]
    [result] = publisher.results
    assert (result.status, result.attempt) == ("failed", 6)
    assert result.error is not None and (result.error.code, result.error.retryable) == ("storage_unavailable", True)


async def test_a_retry_copy_the_topic_refuses_fails_the_request_now() -> None:
    runner = _runner([StorageError("S3 said 503")], refuse_retry=True, retry_attempts=1, retry_topic_rounds=2)
    assert await runner.run(_job(), asyncio.Queue())
    _, publisher = _seen(runner)
    assert publisher.retries == []
    assert [code for _, code in publisher.dead_letters] == ["storage_unavailable"]
    assert [result.status for result in publisher.results] == ["failed"]


async def test_an_error_retrying_cannot_fix_is_answered_at_once() -> None:
    runner = _runner([ImageUrlForbidden("image_url names a bucket start images may not come from")])
    assert await runner.run(_job(), asyncio.Queue())
    pipeline, publisher = _seen(runner)
    assert pipeline.attempts == [("r1", 1)]
    assert publisher.retries == publisher.dead_letters == []
    [result] = publisher.results
    assert result.status == "rejected" and result.error is not None and result.error.code == "image_url_forbidden"


async def test_the_end_of_a_render_is_posted_for_the_scheduler() -> None:
    events: asyncio.Queue[RenderEnded] = asyncio.Queue()
    job = _job()
    assert await _runner(["completed"]).run(job, events)
    assert events.get_nowait() == RenderEnded(job)
    assert events.empty()


async def test_a_deferral_goes_to_the_retry_topic_keeping_attempt_round_and_trace() -> None:
    runner = _runner([])
    delivery = Delivery(attempt=3, round=1, waiting_since_ms=NOW_MS - 5_000)
    assert await runner.defer(_job(delivery), QuotaDecision("defer", 12.5, "over 12 requests per minute"))
    _, publisher = _seen(runner)
    [(_, headers)] = publisher.retries
    assert dict(headers) == {
        "traceparent": TRACEPARENT,
        "vidgen-attempt": b"3",
        "vidgen-retry-round": b"1",
        "vidgen-not-before-ms": str(NOW_MS + 12_500).encode(),
        "vidgen-waiting-since-ms": str(NOW_MS - 5_000).encode(),  # max wait counts from the first wait
    }


async def test_a_deferral_the_retry_topic_refuses_is_answered_rate_limited() -> None:
    runner = _runner([], refuse_retry=True)
    decision = QuotaDecision("defer", 5.0, "over 12 requests per minute")
    job = _job()
    assert await runner.defer(
        Job(job.tp, job.record, job.request.model_copy(update={"tenant_id": "flooder"}), NOW), decision
    )
    _, publisher = _seen(runner)
    [result] = publisher.results
    assert result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("rate_limited", True)
    assert result.error.message == "tenant flooder: over 12 requests per minute; cannot be deferred"
