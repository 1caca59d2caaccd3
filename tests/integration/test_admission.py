"""Backpressure by device memory against the real broker, with a scripted memory probe standing in for the GPU."""

from __future__ import annotations

import asyncio

import pytest
import torch

from consumer.errors import RenderFailed
from consumer.memory.admission import MemoryReading
from consumer.memory.modes import MemoryMode
from consumer.memory.probe import ScriptedProbe
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.render.tiny import build_tiny_pipeline
from consumer.settings import Settings
from tests.support import KafkaClient, metric, request_body, until

GIB = 1 << 30


@pytest.mark.timeout(120)
async def test_short_memory_pauses_fetching_keeps_membership_and_resumes_when_freed(
    settings: Settings, kafka: KafkaClient, start_worker
) -> None:
    probe = ScriptedProbe(MemoryReading(free_bytes=0, total_bytes=8 * GIB, device="scripted"))
    strict = settings.model_copy(
        update={"max_poll_interval_ms": 2_000, "session_timeout_ms": 3_000, "heartbeat_interval_ms": 300}
    )
    worker = await start_worker(strict, memory_probe=probe)
    port = worker.http_port
    await until(lambda: metric(port, "vidgen_rebalances_total"))
    await kafka.send(request_body("mem-0"))
    await until(lambda: metric(port, "vidgen_memory_waiting_jobs"))
    fetched = await metric(port, "vidgen_records_fetched_total")
    for index in range(1, 5):
        await kafka.send(request_body(f"mem-{index}", prompt=f"shoe {index}"))
    # A deliberate duration, not a wait for anything: the point is what a worker does while memory stays short for
    # longer than its session timeout (3 s) and its max poll interval (2 s). Then the conditions below are checked.
    await asyncio.sleep(4.5)
    assert await metric(port, "vidgen_records_fetched_total") == fetched  # nothing fetched past the budget
    assert await metric(port, "vidgen_partitions_paused") == 6  # every assigned one: 2 request + 2 bulk + 2 retry
    assert await metric(port, "vidgen_rebalances_total") == 1  # still in the group
    assert await kafka.committed() == {0: None, 1: None}

    probe.set(free_bytes=6 * GIB)
    results = await kafka.results(5)
    assert {result.status for result in results.values()} == {"completed"}
    assert {result.memory_mode for result in results.values()} == {"resident"}
    assert await metric(port, "vidgen_admission_wait_seconds_total") > 4.5
    assert await metric(port, "vidgen_vram_free_bytes") == 6 * GIB


async def test_a_request_that_can_never_fit_fails_with_too_large_for_worker(
    settings: Settings, kafka: KafkaClient, start_worker
) -> None:
    probe = ScriptedProbe(MemoryReading(free_bytes=GIB, total_bytes=GIB, device="scripted"))
    no_margin = settings.model_copy(update={"memory_margin_bytes": 0, "memory_margin_fraction": 0})
    await start_worker(no_margin, memory_probe=probe)
    huge = request_body("huge-1", width=1024, height=1024, num_frames=49)  # ~3 GiB even with VAE tiling
    await kafka.send(huge)
    await kafka.send(request_body("small-1"))
    results = await kafka.results(2)
    error = results["huge-1"].error
    assert results["huge-1"].status == "failed" and error is not None
    assert (error.code, error.retryable) == ("too_large_for_worker", False)
    assert "most frugal mode" in error.message
    assert results["small-1"].status == "completed"


def _out_of_memory_pipeline(fail_times: int) -> object:
    """The real tiny pipeline whose transformer fails with CUDA's out-of-memory error `fail_times` times."""
    pipeline = build_tiny_pipeline()
    forward = pipeline.transformer.forward
    failures_left = [fail_times]

    def failing_forward(*args: object, **kwargs: object) -> object:
        if failures_left[0] > 0:
            failures_left[0] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(*args, **kwargs)

    pipeline.transformer.forward = failing_forward
    return pipeline


SPEC = RenderSpec(  # 128x128: a seventh of a 256x256 render's cost, and the size does not matter here
    prompt="p", negative_prompt="", width=128, height=128, num_frames=5, steps=2, guidance_scale=5, seed=1
)


async def test_out_of_memory_is_retried_once_in_a_more_frugal_mode(make_renderer) -> None:
    renderer: Renderer = make_renderer(_out_of_memory_pipeline(fail_times=1))
    await renderer.start()
    rendered = await renderer.render(SPEC, None, timeout_s=60, mode=MemoryMode.RESIDENT)
    assert rendered.mode == MemoryMode.VAE_TILING
    assert rendered.frames.shape == (5, 128, 128, 3)


async def test_out_of_memory_twice_fails_retryably_and_the_renderer_stays_usable(make_renderer) -> None:
    renderer: Renderer = make_renderer(_out_of_memory_pipeline(fail_times=2))
    await renderer.start()
    with pytest.raises(RenderFailed) as caught:
        await renderer.render(SPEC, None, timeout_s=60, mode=MemoryMode.RESIDENT)
    assert (caught.value.code, caught.value.retriable) == ("out_of_memory", True)
    assert renderer.state == "ready"
    assert (await renderer.render(SPEC, None, timeout_s=60)).frames.shape[0] == 5
