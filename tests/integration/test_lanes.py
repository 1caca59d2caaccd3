"""Priority lanes against the real broker and a real worker (stand-in renders of a fixed length): a bulk backlog on
`video.requests.bulk` delays an interactive request by about one render, not by the backlog; a bulk request found on
the interactive topic is served; and while both lanes wait, the bulk share holds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import lanes as lanes_bench
from bench.infra import Infra
from consumer.kafka.clients import client_options, ensure_topics, worker_topics
from consumer.render.renderer import Renderer
from consumer.render.standin import StandInPipeline
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.integration.api_helpers import ApiStack, bearer
from tests.support import KafkaClient, request_body, until

pytest_plugins = ["tests.integration.api_fixtures"]

StartWorker = Callable[..., Any]  # the conftest fixtures
MakeRenderer = Callable[[object], Renderer]
RENDER_S = 0.8


async def _publish(kafka: KafkaClient, topic: str, body: dict[str, Any]) -> datetime:
    """Send one request to `topic`; when it was sent."""
    sent_at = datetime.now(UTC)
    await kafka.producer.send_and_wait(topic, value=json.dumps(body).encode(), key=body["request_id"].encode())
    return sent_at


def _bulk(request_id: str) -> dict[str, Any]:
    return request_body(request_id, tenant_id="importer", prompt=f"catalog item {request_id}", priority="bulk")


def _started(result: VideoResult) -> datetime:
    assert result.status == "completed", result.error
    assert result.timings.render_started_at is not None
    return result.timings.render_started_at


async def _worker(settings: Settings, start_worker: StartWorker, make_renderer: MakeRenderer, **overrides: Any) -> Any:
    lanes = settings.model_copy(update={"model": "standin", "standin_render_s": RENDER_S, **overrides})
    await ensure_topics(lanes, [*worker_topics(lanes), lanes.bulk_topic])
    return lanes, await start_worker(lanes, renderer=make_renderer(StandInPipeline(lanes.standin_render_s)))


async def test_a_bulk_backlog_delays_an_interactive_request_by_about_one_render(
    settings: Settings, kafka: KafkaClient, start_worker: StartWorker, make_renderer: MakeRenderer
) -> None:
    backlog = [f"bulk-{index:02d}" for index in range(12)]
    for request_id in backlog:
        await _publish(kafka, settings.bulk_topic, _bulk(request_id))
    settings, worker = await _worker(settings, start_worker, make_renderer)

    async def rendering_bulk() -> bool:
        return any(request_id.startswith("bulk-") for request_id, *_ in worker.progress)

    await until(rendering_bulk, timeout_s=60, every_s=0.05)  # the backlog is being worked through
    sent_at = await _publish(kafka, settings.requests_topic, request_body("merchant", prompt="a merchant waits"))
    await _publish(kafka, settings.requests_topic, _bulk("bulk-on-interactive-topic"))

    results = await kafka.results(2 + len(backlog), timeout_s=120)
    waited_s = (_started(results["merchant"]) - sent_at).total_seconds()
    # The render in progress, a fetch (tansu answers after its 500 ms wait) and the job's own start: not the backlog.
    assert waited_s < RENDER_S + 1.5, f"the interactive request waited {waited_s:.2f} s"
    later = [request_id for request_id in backlog if _started(results[request_id]) > _started(results["merchant"])]
    assert len(later) >= len(backlog) - 4, "the interactive request went ahead of the backlog"
    assert results["bulk-on-interactive-topic"].status == "completed"  # a bulk request on the interactive topic


async def test_while_both_lanes_wait_the_bulk_share_holds(
    settings: Settings, kafka: KafkaClient, start_worker: StartWorker, make_renderer: MakeRenderer
) -> None:
    bulk = [f"bulk-{index:02d}" for index in range(4)]
    interactive = [f"shop-{index:02d}" for index in range(12)]
    for request_id in bulk:
        await _publish(kafka, settings.bulk_topic, _bulk(request_id))
    for request_id in interactive:
        await _publish(kafka, settings.requests_topic, request_body(request_id, prompt=f"shoe {request_id}"))
    started = time.monotonic()
    await _worker(settings, start_worker, make_renderer, standin_render_s=0.2, bulk_min_share=0.25)

    results = await kafka.results(len(bulk) + len(interactive), timeout_s=120)
    order = "".join(
        "B" if request_id.startswith("bulk-") else "I"
        for request_id in sorted(results, key=lambda request_id: _started(results[request_id]))
    )
    assert order.count("B") == len(bulk)
    # One render in four is bulk while both wait: never more than three interactive renders in a row before the
    # backlog is done (the very first renders may start before every interactive record was fetched).
    assert "IIII" not in order[: order.rindex("B")], order
    assert order.count("I", 0, 8) >= 5, order  # and interactive requests still go first
    assert time.monotonic() - started < 60


@pytest.mark.timeout(240)
async def test_the_lanes_benchmark_runs_tiny_and_reports_its_shape(
    broker: str, s3_endpoint: str, tmp_path: Path
) -> None:
    infra = Infra(bootstrap=broker, s3_endpoint=s3_endpoint, log_dir=tmp_path)
    report = await lanes_bench.measure(infra, render_s=0.05, bulk=6, interactive=2, interval_s=0.1)
    assert report["parameters"]["bulk_requests"] == 6 and report["parameters"]["workers"] == 2
    for run in report["runs"].values():
        assert run["statuses"] == ["completed"]
        assert run["interactive_wait_s"]["p50"] >= 0 and run["bulk_throughput_per_s"] > 0
    json.dumps(report)  # the benchmark prints it as JSON


async def _keys(settings: Settings, topic: str) -> set[str]:
    """The keys of every record on `topic` so far."""
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        keys: set[str] = set()
        for partition, end in (await consumer.end_offsets(partitions)).items():
            while await consumer.position(partition) < end:
                for batch in (await consumer.getmany(partition, timeout_ms=200)).values():
                    keys.update(record.key.decode() for record in batch)
        return keys
    finally:
        await consumer.stop()


async def test_the_job_api_publishes_each_job_to_its_lane_and_follows_both(api_stack: ApiStack) -> None:
    settings, body = api_stack.settings, {"prompt": "a green kettle", "width": 256, "height": 256, "num_frames": 5}
    async with aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-1"])) as http:
        async with http.post(f"{api_stack.url}/v1/videos", json={**body, "priority": "bulk"}) as response:
            assert response.status == 202
            bulk = await response.json()
        async with http.post(f"{api_stack.url}/v1/videos", json=body) as response:
            assert response.status == 202
            interactive = await response.json()
    assert bulk["request"]["priority"] == "bulk" and "priority" not in interactive["request"]
    bulk_topic, requests_topic = (
        await _keys(settings, settings.bulk_topic),
        await _keys(settings, settings.requests_topic),
    )
    assert bulk["id"] in bulk_topic and bulk["id"] not in requests_topic
    assert interactive["id"] in requests_topic and interactive["id"] not in bulk_topic

    async def view_read_the_bulk_topic() -> bool:  # every replica learns of the job from Kafka, bulk included
        async with aiohttp.ClientSession() as http, http.get(f"{api_stack.operator_url}/metrics") as response:
            return 'vidgen_api_view_records_total{topic="bulk"}' in await response.text()

    await until(view_read_the_bulk_topic, timeout_s=30)
