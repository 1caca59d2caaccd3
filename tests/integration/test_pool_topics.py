"""A template worker started as documented (`VIDGEN_MODEL=template vidgen run`, everything else as the GPU pool's)
against a broker of its own, so that every topic and group keeps its default name: it reads the template pool's
topics in the template pool's group and never takes a job of the GPU pool; a worker whose model and topics disagree
exits 2 with one line naming the settings (issue 22, item 8)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.workers import WorkerProcess
from consumer.dev.embedded import free_port, kafka_broker
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import KafkaClient, request_body

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker for this module alone: the workers here use the default topic and group names."""
    with kafka_broker(log_path=tmp_path_factory.mktemp("tansu-pools") / "tansu.log") as bootstrap:
        yield bootstrap


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop(grace_s=5)


def _environment(broker: str, s3_endpoint: str, bucket: str, name: str, **variables: str) -> dict[str, str]:
    """What an operator sets for every worker (Kafka, S3, probes), and nothing about topics or groups."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIDGEN_")}
    env.update(
        VIDGEN_KAFKA_BOOTSTRAP_SERVERS=broker,
        VIDGEN_KAFKA_ENABLE_IDEMPOTENCE="false",
        VIDGEN_S3_ENDPOINT_URL=s3_endpoint,
        VIDGEN_S3_BUCKET=bucket,
        VIDGEN_S3_CREATE_BUCKET="true",
        VIDGEN_HTTP_HOST="127.0.0.1",
        VIDGEN_HTTP_PORT=str(free_port()),
        VIDGEN_WORKER_ID=name,
        VIDGEN_SESSION_TIMEOUT_MS="6000",
        VIDGEN_HEARTBEAT_INTERVAL_MS="500",
        VIDGEN_SHUTDOWN_GRACE_S="5",
        VIDGEN_LOG_FORMAT="text",
        VIDGEN_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        **variables,
    )
    return env


async def test_model_template_alone_serves_the_template_pool_and_takes_no_gpu_job(
    own_broker: str, s3_endpoint: str, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    bucket = f"vidgen-pools-{uuid.uuid4().hex[:8]}"
    gpu = WorkerProcess(
        _environment(own_broker, s3_endpoint, bucket, "gpu-1", VIDGEN_MODEL="standin", VIDGEN_STANDIN_RENDER_S="0.2"),
        tmp_path / "gpu-1.log",
    )
    template = WorkerProcess(
        _environment(own_broker, s3_endpoint, bucket, "template-1", VIDGEN_MODEL="template"),
        tmp_path / "template-1.log",
    )
    workers.extend([gpu, template])
    gpu.start()
    await gpu.wait_ready()
    template.start()
    await template.wait_ready()

    defaults = Settings(kafka_bootstrap_servers=own_broker, kafka_enable_idempotence=False)
    ordinary = [request_body(f"plain-{index}") for index in range(8)]  # no fallback asked for: the GPU pool's
    degraded = request_body("fallback-1")
    client, fallback = KafkaClient(defaults), KafkaClient(defaults.template_pool())
    await client.start()
    await fallback.start()
    try:
        for body in ordinary:
            await client.send(body)
        await fallback.send(degraded)
        results = await _results(client, 9, timeout_s=120)
    finally:
        await client.stop()
        await fallback.stop()

    assert template.alive() and gpu.alive(), template.log_tail()
    answered_by = {result.request_id: (result.model, result.degraded) for result in results}
    assert answered_by == {
        **{body["request_id"]: ("standin", False) for body in ordinary},
        "fallback-1": ("template", True),
    }


async def _results(client: KafkaClient, count: int, *, timeout_s: float) -> list[VideoResult]:
    """The results published until there are `count`, or all there are after `timeout_s` (so that a request nobody
    answers shows in the assertion, beside the others' answers)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        records, _ = await client.read_to_end(client.settings.results_topic)
        if len(records) >= count or asyncio.get_running_loop().time() > deadline:
            return [VideoResult.model_validate_json(record.value) for record in records]
        await asyncio.sleep(1)


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"VIDGEN_MODEL": "template", "VIDGEN_REQUESTS_TOPIC": "video.requests"}, "VIDGEN_REQUESTS_TOPIC"),
        ({"VIDGEN_MODEL": "template", "VIDGEN_CONSUMER_GROUP": "video-renderers"}, "VIDGEN_CONSUMER_GROUP"),
        ({"VIDGEN_MODEL": "standin", "VIDGEN_REQUESTS_TOPIC": "video.requests.template"}, "VIDGEN_REQUESTS_TOPIC"),
    ],
)
async def test_a_worker_whose_model_and_topics_disagree_exits_2_naming_them(
    own_broker: str,
    s3_endpoint: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
    variables: dict[str, str],
    named: str,
) -> None:
    worker = WorkerProcess(_environment(own_broker, s3_endpoint, "vidgen-pools", "odd-1", **variables), tmp_path / "w")
    workers.append(worker)
    worker.start()
    assert worker.process is not None
    code = await asyncio.wait_for(asyncio.to_thread(worker.process.wait), timeout=60)

    lines = worker.log_path.read_text().strip().splitlines()
    assert code == 2, worker.log_tail()
    assert len(lines) == 1, lines
    assert "worker cannot start" in lines[0] and "(pool_mismatch)" in lines[0]
    assert named in lines[0] and "VIDGEN_MODEL" in lines[0]
