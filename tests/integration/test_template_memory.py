"""The template pool's memory gate against a real template worker process, the broker and the S3 server: at full
concurrency (a burst of start-image and title-card jobs, two render slots, four finishing) the worker's process tree
never grows past its memory budget, and a job that can never fit is answered `too_large_for_worker` (issue 22, item 4).
The budget is small so that the gate bites at 512x512x25; `bench/template_memory.py` measures 1024x1024x49."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.template_memory import TreePeak
from bench.workers import WorkerProcess
from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.dev.embedded import free_port
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from tests.support import KafkaClient, request_body

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

MIB = 1 << 20
BUDGET = 400 * MIB  # two 512x512x25 jobs (149 MB each by the estimate) at once, not three


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop(grace_s=5)


def _template_worker(pool: Settings, log: Path, **variables: str) -> WorkerProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIDGEN_")}
    env.update(
        pool.model_copy(
            update={"http_port": free_port(), "log_format": "text", "log_level": "WARNING", "shutdown_grace_s": 5}
        ).as_environment()
    )
    # No safety margin: the budget is what the jobs may take.
    env.update(PYTHONUNBUFFERED="1", VIDGEN_MEMORY_MARGIN_BYTES="0", VIDGEN_MEMORY_MARGIN_FRACTION="0", **variables)
    return WorkerProcess(env, log)


async def test_at_full_concurrency_a_template_worker_stays_within_its_budget(
    settings: Settings, store: ObjectStore, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    pool = settings.template_pool()
    worker = _template_worker(
        pool,
        tmp_path / "template.log",
        VIDGEN_CPU_MEMORY_BUDGET_BYTES=str(BUDGET),
        VIDGEN_MAX_INFLIGHT_JOBS="2",
        VIDGEN_MAX_FINISHING_JOBS="4",
        VIDGEN_IMAGE_DECODE_MEMORY_BYTES=str(64 * MIB),  # a decode's share of a job: under its frames here
        VIDGEN_IMAGE_MAX_BYTES=str(2 * MIB),
    )
    workers.append(worker)
    worker.start()
    await worker.wait_ready()
    shoe = product_image(1600, 1200)
    key = upload_key(shoe, "shoe.png", prefix=settings.s3_key_prefix, tenant_id="shop-1")
    await store.put(key, shoe, content_type="image/png", metadata={})
    image = {"image_url": f"s3://{settings.s3_bucket}/{key}"}

    client = KafkaClient(pool)
    await client.start()
    try:
        # One small job first: what the worker loads on its first job (the encoder, S3 and result paths) is not a
        # job's memory.
        await client.send(request_body("warm-up", width=256, height=256, num_frames=5))
        await client.results(1, timeout_s=120)
        await asyncio.sleep(1)
        tree = TreePeak(worker.pid)
        idle = tree.now()
        burst = [
            request_body(
                f"burst-{index}", width=512, height=512, num_frames=25, seed=index, **(image if index % 2 else {})
            )
            for index in range(6)
        ]
        never = request_body("never-fits", width=1024, height=1024, num_frames=49)
        with tree:
            for body in [*burst, never]:
                await client.send(body)
            results = await client.results(8, timeout_s=600)
        waited = await worker.metric("vidgen_admission_wait_seconds_total")
    finally:
        await client.stop()

    grown = tree.peak - idle
    log.info("template worker: idle %d MiB, peak %d MiB, grew %d MiB", idle // MIB, tree.peak // MIB, grown // MIB)
    assert [results[body["request_id"]].status for body in burst] == ["completed"] * 6
    refused = results["never-fits"]
    assert refused.status == "failed" and refused.error is not None
    assert (refused.error.code, refused.error.retryable) == ("too_large_for_worker", False)
    assert "for its frames" in refused.error.message and "cpu" in refused.error.message
    assert waited > 0, "the burst never waited for memory: the budget did not bite"
    assert grown <= BUDGET, f"grew {grown / MIB:.0f} MiB past an idle {idle / MIB:.0f} MiB; budget {BUDGET / MIB:.0f}"


async def test_without_a_budget_the_memory_limit_less_the_idle_worker_is_the_budget(
    settings: Settings, kafka: KafkaClient, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    """No VIDGEN_CPU_MEMORY_BUDGET_BYTES: a cgroup limit (a fake cgroup v2 root here) less the worker's resident
    memory at start-up. 1024x1024x49 (922 MB by the estimate) cannot fit under 1 GiB less the idle worker; a
    512x512x25 title card can."""
    pool = settings.template_pool()
    (tmp_path / "memory.max").write_text(f"{1024 * MIB}\n")
    worker = _template_worker(
        pool,
        tmp_path / "template.log",
        VIDGEN_CGROUP_ROOT=str(tmp_path),
    )
    workers.append(worker)
    worker.start()
    await worker.wait_ready()
    client = KafkaClient(pool)
    await client.start()
    try:
        await client.send(request_body("huge-1", width=1024, height=1024, num_frames=49))
        await client.send(request_body("small-1", width=512, height=512, num_frames=25))
        results = await client.results(2, timeout_s=180)
        budget = await worker.metric("vidgen_vram_total_bytes")
    finally:
        await client.stop()

    huge, small = results["huge-1"], results["small-1"]
    assert huge.status == "failed" and huge.error is not None and huge.error.code == "too_large_for_worker"
    assert small.status == "completed"
    assert 0 < budget <= 1024 * MIB - 200 * MIB  # the limit less an idle worker (about 280 MiB with torch)
