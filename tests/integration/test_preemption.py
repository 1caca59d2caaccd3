"""Preemption with a real worker (the stand-in model: renders of fixed length in steps), broker and S3 server: an
interactive request that arrives while a long bulk render holds the model renders first; the bulk render pauses at its
next step, resumes where it paused, and says so in its result and progress events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from consumer.render.renderer import Renderer
from consumer.render.standin import StandInPipeline
from consumer.settings import Settings
from schemas.events import VideoProgress
from tests.support import KafkaClient, request_body, until

STEPS = 24


@pytest.fixture
def standin() -> Iterator[Renderer]:
    renderer = Renderer(lambda: StandInPipeline(6.0))  # a quarter of a second a step
    yield renderer
    renderer.close()


async def test_an_interactive_request_renders_before_a_long_bulk_render_that_resumes_after_it(
    settings: Settings, kafka: KafkaClient, start_worker: Callable[..., Any], standin: Renderer
) -> None:
    worker = await start_worker(
        settings.model_copy(update={"model": "standin", "progress_interval_s": 0.0, "checkpoint_interval_s": 0.0}),
        renderer=standin,
    )
    await kafka.send(request_body("catalog-1", priority="bulk", num_inference_steps=STEPS))
    await until(lambda: _stepped(worker.progress, "catalog-1"), timeout_s=60)
    await kafka.send(request_body("merchant-1", num_inference_steps=STEPS))

    results = await kafka.results(2, timeout_s=90)
    bulk, interactive = results["catalog-1"], results["merchant-1"]
    assert (bulk.status, interactive.status) == ("completed", "completed")
    assert interactive.timings.render_finished_at is not None and bulk.timings.render_finished_at is not None
    assert interactive.timings.render_finished_at < bulk.timings.render_finished_at  # it did not wait for the bulk
    paused_at = bulk.resumed_from_step
    assert paused_at is not None and 0 < paused_at < STEPS and interactive.resumed_from_step is None
    # The bulk render's steps were each done once: up to the pause, then after it.
    steps = [step for request_id, step, _ in worker.progress if request_id == "catalog-1"]
    assert steps == list(range(1, STEPS + 1))

    records, _ = await kafka.read_to_end(settings.progress_topic)
    events = [VideoProgress.model_validate_json(record.value) for record in records]
    said = [(event.event, event.step) for event in events if event.request_id == "catalog-1"]
    assert ("checkpointed", paused_at) in said and ("resumed", paused_at) in said
    assert said.index(("checkpointed", paused_at)) < said.index(("resumed", paused_at))


async def _stepped(progress: list[tuple[str, int, int]], request_id: str) -> bool:
    return any(seen == request_id for seen, _, _ in progress)
