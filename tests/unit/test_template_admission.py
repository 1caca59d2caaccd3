"""The template pool's admission: a job's estimate (`consumer.memory.template_estimate`) and the gate that holds it
from admission until the job is answered (`JobMemoryGate`)."""

from __future__ import annotations

import asyncio

import pytest

from consumer.memory.admission import Admit, Reject, SafetyMargin
from consumer.memory.gate import JobMemoryGate
from consumer.memory.probe import CpuBudgetProbe
from consumer.memory.template_estimate import decode_bytes, frames_bytes, template_job_bytes
from consumer.telemetry.worker_metrics import Metrics
from schemas.events import VideoRequest

MIB = 1 << 20
pytestmark = pytest.mark.torch  # consumer.memory.probe (CpuBudgetProbe) imports torch for its CUDA probe

DECODE = decode_bytes(decode_memory_bytes=768 * MIB, image_max_bytes=20 * MIB)


def _request(request_id: str, width: int = 512, height: int = 512, frames: int = 25) -> VideoRequest:
    return VideoRequest(
        request_id=request_id, tenant_id="shop-1", prompt="a lamp", width=width, height=height, num_frames=frames
    )


def test_the_largest_request_and_a_start_images_decode() -> None:
    assert frames_bytes(1024, 1024, 49) == 15 * 49 * 1024 * 1024 + 128 * 1024 * 1024 + 16 * MIB  # 922 MB
    assert template_job_bytes(1024, 1024, 49, decode=DECODE) == frames_bytes(1024, 1024, 49)  # frames dominate
    assert template_job_bytes(256, 256, 9, decode=DECODE) == DECODE == 852 * MIB  # the decode dominates
    assert template_job_bytes(256, 256, 9, decode=None) == frames_bytes(256, 256, 9)  # a title card decodes nothing


async def test_a_reservation_lasts_past_the_render_until_the_job_is_answered() -> None:
    one = frames_bytes(512, 512, 25)
    gate = JobMemoryGate(
        CpuBudgetProbe(2 * one + MIB),
        lambda request: frames_bytes(request.width, request.height, request.num_frames),
        margin=SafetyMargin(0, 0.0),
        metrics=Metrics(),
    )
    first, second, third = _request("r1"), _request("r2"), _request("r3")
    assert isinstance(await gate.admit(first, stop=lambda: False), Admit)
    assert isinstance(await gate.admit(second, stop=lambda: False), Admit)
    waiting = asyncio.create_task(gate.admit(third, stop=lambda: False))
    await asyncio.sleep(0.6)
    gate.render_ended(first)  # its frames are still being encoded: nothing freed
    await asyncio.sleep(0.6)
    assert not waiting.done() and gate.waiting
    gate.release(first)  # answered
    assert isinstance(await asyncio.wait_for(waiting, 5), Admit)
    assert gate.renders_in_mode is False


async def test_a_job_that_can_never_fit_is_rejected_naming_its_frames() -> None:
    gate = JobMemoryGate(
        CpuBudgetProbe(512 * MIB),
        lambda request: frames_bytes(request.width, request.height, request.num_frames),
        margin=SafetyMargin(0, 0.0),
        metrics=Metrics(),
    )
    decision = await gate.admit(_request("huge", 1024, 1024, 49), stop=lambda: False)
    assert isinstance(decision, Reject) and decision.code == "too_large_for_worker"
    needs = "needs 0.9 GiB for its frames, encoder and start-image decode"
    assert decision.message == f"{needs}; this worker's cpu has 0.5 GiB usable of 0.5 GiB"
