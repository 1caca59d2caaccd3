"""Pipelined stages against the real broker and S3 server: a job hands on its render slot and its device memory
reservation when its render ends, so the next request renders while the last one encodes and uploads."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from consumer.memory.admission import MemoryReading
from consumer.memory.estimate import estimate_per_mode
from consumer.memory.modes import MemoryMode
from consumer.memory.probe import ScriptedProbe
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import KafkaClient, request_body

SIZE = {"width": 256, "height": 256, "num_frames": 13, "num_inference_steps": 2}


def _renders(results: dict[str, VideoResult]) -> list[tuple[datetime, datetime, datetime]]:
    """(render started, render finished, result built) of each request, in render order."""
    spans = []
    for result in results.values():
        timings = result.timings
        assert timings.render_started_at is not None and timings.render_finished_at is not None
        spans.append((timings.render_started_at, timings.render_finished_at, timings.completed_at))
    return sorted(spans)


async def _run(
    settings: Settings, kafka: KafkaClient, start_worker, tiny_renderer: Renderer, count: int
) -> list[tuple[datetime, datetime, datetime]]:
    await tiny_renderer.start()
    estimate = estimate_per_mode(SIZE["width"], SIZE["height"], SIZE["num_frames"], 5.0, tiny_renderer.profile())
    # Room for one reservation: a second job is admitted only once the first gave its reservation back.
    one = estimate[MemoryMode.RESIDENT] * 3 // 2
    probe = ScriptedProbe(MemoryReading(free_bytes=one, total_bytes=one, device="scripted"))
    no_margin = settings.model_copy(
        update={"memory_margin_bytes": 0, "memory_margin_fraction": 0, "memory_mode": "resident"}
    )
    await start_worker(no_margin, memory_probe=probe)
    for index in range(count):
        await kafka.send(request_body(f"pipe-{index}", prompt=f"sneaker {index}", **SIZE))
    results = await kafka.results(count, timeout_s=180)  # 13-frame renders: a minute or more on a busy machine
    assert {result.status for result in results.values()} == {"completed"}
    return _renders(results)


@pytest.mark.timeout(240)
async def test_the_next_render_starts_while_the_last_result_is_still_uploading(
    settings: Settings, kafka: KafkaClient, start_worker, tiny_renderer: Renderer
) -> None:
    # Two render slots: device memory is what holds the second job back, until the first render ends.
    spans = await _run(settings, kafka, start_worker, tiny_renderer, 4)
    for (_, finished, completed), (next_started, _, _) in itertools.pairwise(spans):
        assert next_started >= finished  # one render at a time: the memory admits one
        assert next_started < completed  # ...but it did not wait for the previous result


@pytest.mark.timeout(240)
async def test_without_a_finishing_stage_jobs_run_one_after_another(
    settings: Settings, kafka: KafkaClient, start_worker, tiny_renderer: Renderer
) -> None:
    sequential = settings.model_copy(update={"max_inflight_jobs": 1, "max_finishing_jobs": 0})
    spans = await _run(sequential, kafka, start_worker, tiny_renderer, 3)
    for (_, _, completed), (next_started, _, _) in itertools.pairwise(spans):
        assert next_started > completed
