"""Delivery guarantees under long renders, revocations, crashes and render deadlines, against the real broker and S3
server. Each test ends on its own. Outages of S3 and of the broker are in tests/integration/test_outages.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from consumer.settings import Settings
from tests.support import CrashingPipeline, KafkaClient, SlowPipeline, metric, request_body, until


@pytest.mark.timeout(120)
async def test_render_longer_than_max_poll_interval_causes_no_rebalance(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    quick_poll = settings.model_copy(update={"max_poll_interval_ms": 2_000})
    slow = make_renderer(SlowPipeline(step_s=1.5))  # 4 steps: 6 s, three times the poll interval
    worker = await start_worker(quick_poll, renderer=slow)
    started = time.monotonic()
    await kafka.send(request_body("long-1", num_inference_steps=4))
    results = await kafka.results(1)
    assert time.monotonic() - started > 6
    assert results["long-1"].status == "completed" and results["long-1"].attempt == 1
    assert await metric(worker.http_port, "vidgen_rebalances_total") == 1  # the initial assignment only
    assert await worker.shutdown() == 0  # drained: nothing more can be published
    records, _ = await kafka.read_to_end(settings.results_topic)
    assert [record.key for record in records] == [b"long-1"]


async def _rendering_then_revoked(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer, request_id: str, *, burst: bool
) -> tuple[Any, Any]:
    """A worker rendering `request_id` (5 steps of 1 s) when a second worker joins and forces a rebalance."""
    first = await start_worker(settings, renderer=make_renderer(SlowPipeline(step_s=1.0)))
    await until(lambda: metric(first.http_port, "vidgen_rebalances_total"))
    await kafka.send(request_body(request_id, num_inference_steps=5))
    await until(lambda: metric(first.http_port, "vidgen_inflight_jobs"))
    second_settings = settings.model_copy(update={"worker_id": "second"})
    second = await start_worker(second_settings, renderer=make_renderer(SlowPipeline(step_s=1.0)), burst=burst)
    return first, second


@pytest.mark.timeout(150)
async def test_revocation_mid_render_without_checkpoints_finishes_and_commits_before_handing_over(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    settings = settings.model_copy(update={"checkpoints": False})
    # The newcomer runs in burst mode: it stops once it has read every partition it was given to the end and
    # answered what it found, so its end proves it did not redo the committed request.
    first, second = await _rendering_then_revoked(settings, kafka, start_worker, make_renderer, "revoked-1", burst=True)
    results = await kafka.results(1)
    assert results["revoked-1"].worker_id == settings.worker_id
    assert await kafka.wait_committed(1) == 1
    assert await second.finished() == 0
    assert await first.shutdown() == 0
    records, _ = await kafka.read_to_end(settings.results_topic)
    assert [record.key for record in records] == [b"revoked-1"]


@pytest.mark.timeout(150)
async def test_revocation_mid_render_with_checkpoints_hands_the_render_back_and_its_next_owner_resumes_it(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    # The rebalance revokes every partition: the render stops at its next step, its state goes to the bucket and
    # the record back to the group uncommitted; whichever worker owns the partition next resumes from that step.
    first, second = await _rendering_then_revoked(settings, kafka, start_worker, make_renderer, "handed-1", burst=False)
    results = await kafka.results(1)
    assert results["handed-1"].status == "completed"
    assert (results["handed-1"].resumed_from_step or 0) >= 1
    assert await kafka.wait_committed(1) == 1
    assert await second.shutdown() == 0
    assert await first.shutdown() == 0
    records, _ = await kafka.read_to_end(settings.results_topic)
    assert [record.key for record in records] == [b"handed-1"]


@pytest.mark.timeout(120)
async def test_revocation_past_the_grace_abandons_without_commit_and_the_new_owner_renders(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    impatient = settings.model_copy(update={"rebalance_grace_s": 0.5})
    slow = make_renderer(SlowPipeline(step_s=1.0))
    quick = make_renderer(SlowPipeline(step_s=0.1))
    first = await start_worker(impatient, renderer=slow)
    await until(lambda: metric(first.http_port, "vidgen_rebalances_total"))
    await kafka.send(request_body("abandoned-1", num_inference_steps=8))
    await until(lambda: metric(first.http_port, "vidgen_inflight_jobs"))
    # The newcomer forces a rebalance; eager rebalancing revokes every partition of the first worker, which
    # waits 0.5 s for its render, then abandons it without publishing or committing.
    second = await start_worker(impatient.model_copy(update={"worker_id": "second"}), renderer=quick)
    results = await kafka.results(1)
    assert results["abandoned-1"].status == "completed"
    assert await kafka.wait_committed(1) == 1
    assert await first.shutdown() == 0  # once it is gone it can publish nothing more
    assert await second.shutdown() == 0
    records, _ = await kafka.read_to_end(settings.results_topic)
    assert [record.key for record in records] == [b"abandoned-1"]  # the abandoned render never published


async def test_a_crashing_render_fails_that_request_and_the_worker_goes_on(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    once = settings.model_copy(update={"retry_attempts": 1, "retry_topic_rounds": 0})
    crashing = make_renderer(CrashingPipeline())
    await start_worker(once, renderer=crashing)
    await kafka.send(request_body("crash-1", prompt="please crash"))
    await kafka.send(request_body("fine-1"))
    results = await kafka.results(2)
    crash = results["crash-1"]
    assert crash.status == "failed" and crash.error is not None
    assert (crash.error.code, crash.error.retryable) == ("render_failed", True)
    assert "shapes do not match" in crash.error.message
    assert results["fine-1"].status == "completed"


async def test_a_device_error_makes_the_worker_unready_and_exit_non_zero(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    once = settings.model_copy(update={"retry_attempts": 1, "retry_topic_rounds": 0})
    crashing = make_renderer(CrashingPipeline())
    worker = await start_worker(once, renderer=crashing)
    await kafka.send(request_body("cuda-1", prompt="cuda please"))
    results = await kafka.results(1)
    assert results["cuda-1"].error is not None and results["cuda-1"].error.code == "render_failed"
    assert await asyncio.wait_for(worker.task, 30) == 1


async def test_render_deadline_per_request_stops_a_runaway_render(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    slow = make_renderer(SlowPipeline(step_s=0.5))
    await start_worker(settings, renderer=slow)
    await kafka.send(request_body("runaway-1", num_inference_steps=20, render_timeout_s=1.2))
    await kafka.send(request_body("normal-1", num_inference_steps=2))
    results = await kafka.results(2)
    runaway = results["runaway-1"]
    assert runaway.status == "failed" and runaway.error is not None
    assert (runaway.error.code, runaway.error.retryable) == ("render_timeout", False)
    assert runaway.timings.render_started_at is not None
    assert results["normal-1"].status == "completed"
