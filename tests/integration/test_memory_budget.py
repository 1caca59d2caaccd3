"""A CPU worker without VIDGEN_CPU_MEMORY_BUDGET_BYTES admits renders against a budget derived from its memory
limit (a fake cgroup here): it answers what can never fit and renders the rest. How the limit is read is unit-tested
in tests/unit/test_memory_budget.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consumer.memory.probe import process_rss_bytes
from consumer.settings import Settings
from tests.support import KafkaClient, request_body

GIB = 1 << 30
TOTAL = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.timeout(300)
async def test_a_cpu_worker_without_a_budget_refuses_what_its_memory_limit_cannot_hold(
    settings: Settings, kafka: KafkaClient, start_worker, tmp_path: Path
) -> None:
    # The worker's budget: this limit less its RSS after the model loaded (this process's, about what is measured
    # here) less one start-image decode's memory. With the default margin (1 GiB + 5%) ~1 GiB stays usable: the
    # small render (~0.2 GiB) fits, 1024x1024x49 (~3 GiB even with VAE tiling) never can.
    decode = (settings.max_inflight_jobs - 1) * settings.image_decode_memory_bytes
    limit = process_rss_bytes() + decode + int(2.1 * GIB)
    (tmp_path / "memory.max").write_text(f"{limit}\n")  # a cgroup v2 root holding the limit
    assert settings.cpu_memory_budget_bytes is None and limit < TOTAL
    await start_worker(settings.model_copy(update={"cgroup_root": str(tmp_path)}))

    await kafka.send(request_body("huge-1", width=1024, height=1024, num_frames=49, num_inference_steps=1))
    await kafka.send(request_body("small-1"))
    results = await kafka.results(2, timeout_s=240)

    huge, small = results["huge-1"], results["small-1"]
    assert huge.status == "failed" and huge.error is not None
    assert (huge.error.code, huge.error.retryable) == ("too_large_for_worker", False)
    assert "most frugal mode" in huge.error.message and "cpu" in huge.error.message
    assert small.status == "completed"
