"""Session fixtures: a real Kafka-protocol broker (tansu) and a real S3 server (moto) on loopback, the tiny model
loaded once, and a helper that runs a worker until the test is done with it."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.app import serve
from consumer.dev.embedded import isolated_settings, kafka_broker, s3_server
from consumer.kafka.clients import client_options, ensure_topics, worker_topics
from consumer.render.loader import load_pipeline
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.storage import ObjectStore, open_s3_client
from schemas.events import VideoResult

# Small enough that a render takes about a second on a 2-core CPU.
SMALL = {"width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A fresh tracer provider per test recording into memory, never installed globally."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with kafka_broker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log") as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"  # moto accepts any credentials
    with s3_server() as endpoint:
        yield endpoint
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def settings(broker: str, s3_endpoint: str) -> Settings:
    """Fresh topics, group and bucket per test, so tests on the shared broker never see each other."""
    run = uuid.uuid4().hex[:8]
    return isolated_settings(
        broker,
        s3_endpoint,
        run,
        topic_partitions=2,
        http_host="127.0.0.1",
        http_port=0,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        shutdown_grace_s=10,
        worker_id=f"test-worker-{run}",
    )


@pytest.fixture(scope="session")
def tiny_renderer() -> Iterator[Renderer]:
    """The tiny pipeline loaded once for the session; each worker shares it (renders are serialised)."""
    renderer = Renderer(lambda: load_pipeline("tiny", device=torch.device("cpu"), dtype=torch.float32))
    yield renderer
    renderer.close()


@dataclass
class RunningWorker:
    settings: Settings
    http_port: int
    task: asyncio.Task[int]
    stop: asyncio.Event
    progress: list[tuple[str, int, int]] = field(default_factory=list)

    async def shutdown(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 60)


@pytest.fixture
def make_renderer() -> Iterator[Callable[[object], Renderer]]:
    """Renderers around test pipelines; closed only after the workers using them have stopped."""
    made: list[Renderer] = []

    def make(pipeline: object) -> Renderer:
        made.append(Renderer(lambda: pipeline))
        return made[-1]

    yield make
    for renderer in made:
        renderer.close()


@pytest.fixture
async def start_worker(
    tiny_renderer: Renderer, make_renderer: Callable[[object], Renderer]
) -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningWorker] = []

    async def start(settings: Settings, *, renderer: Renderer | None = None, **serve_options: Any) -> RunningWorker:
        stop = asyncio.Event()
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        progress: list[tuple[str, int, int]] = []
        task = asyncio.create_task(
            serve(
                settings,
                stop,
                renderer=renderer or tiny_renderer,
                on_http_port=port.set_result,
                on_progress=lambda *event: progress.append(event),
                **serve_options,
            )
        )
        done, _ = await asyncio.wait([port, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises what went wrong at start-up
        handle = RunningWorker(settings, port.result(), task, stop, progress)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        if not handle.task.done():
            await handle.shutdown()


@pytest.fixture
async def kafka(settings: Settings) -> AsyncIterator[KafkaClient]:
    await ensure_topics(settings, worker_topics(settings))
    client = KafkaClient(settings)
    await client.start()
    yield client
    await client.stop()


class KafkaClient:
    """A plain producer and an assign()-based reader, as an upstream or downstream team would use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(**client_options(settings))

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(
        self,
        value: bytes | dict[str, Any] | None,
        *,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if isinstance(value, dict):
            key = key if key is not None else value.get("request_id")
            value = json.dumps(value).encode()
        if isinstance(key, str):
            key = key.encode()
        await self.producer.send_and_wait(self.settings.requests_topic, value=value, key=key, headers=headers or [])

    async def read(self, topic: str, count: int, *, timeout_s: float = 90) -> list[Any]:
        """The first `count` records of a topic, across its partitions."""
        consumer = AIOKafkaConsumer(**client_options(self.settings), auto_offset_reset="earliest")
        await consumer.start()
        try:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            records: list[Any] = []
            async with asyncio.timeout(timeout_s):
                while len(records) < count:
                    batch = await consumer.getmany(timeout_ms=200)
                    for part in batch.values():
                        records.extend(part)
            return records
        finally:
            await consumer.stop()

    async def results(self, count: int, *, timeout_s: float = 90) -> dict[str, VideoResult]:
        records = await self.read(self.settings.results_topic, count, timeout_s=timeout_s)
        return {r.key.decode(): VideoResult.model_validate_json(r.value) for r in records}

    async def wait_committed(self, total: int, *, timeout_s: float = 30) -> int:
        """Sum of the group's committed offsets once it reaches `total` (commits follow results closely)."""
        async with asyncio.timeout(timeout_s):
            # Polling is the only way to watch another process's commits.
            while (seen := sum(offset or 0 for offset in (await self.committed()).values())) < total:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        return seen

    async def committed(self) -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(**client_options(self.settings), group_id=self.settings.consumer_group)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.settings.requests_topic) or set()
            return {p: await consumer.committed(TopicPartition(self.settings.requests_topic, p)) for p in partitions}
        finally:
            await consumer.stop()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ObjectStore]:
    async with open_s3_client(settings) as client:
        store = ObjectStore(client, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        await store.ensure_bucket()
        yield store


def request_body(request_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id or f"req-{uuid.uuid4().hex[:10]}",
        "tenant_id": "shop-1",
        "prompt": "a red sneaker on a white table",
        **SMALL,
    }
    body.update(overrides)
    return body
