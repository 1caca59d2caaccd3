"""Session fixtures of the integration tier: a real Kafka-protocol broker (tansu) and a real S3 server (moto) on
loopback, the tiny model loaded once, and a helper that runs a worker until the test is done with it.

Tests that only need distinct request ids share one worker per module (`module_worker`, with `module_settings`,
`module_kafka` and `module_store` on topics and a bucket of the module's own; a module's `MODULE_WORKER_OVERRIDES`
dict adjusts the worker's settings) and read back their own requests' results (`KafkaClient.results_for`): a group
join costs 3 s on tansu."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from consumer.dev.embedded import isolated_settings, kafka_broker, s3_server
from consumer.kafka.clients import ensure_topics, worker_topics
from consumer.object_store import ObjectStore, open_s3_client
from consumer.render.loader import load_model
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.worker.wiring import serve
from tests.support import KafkaClient, metric, template_renderer, until


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


def _fresh_settings(broker: str, s3_endpoint: str, **overrides: Any) -> Settings:
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
        **overrides,
    )


@pytest.fixture
def settings(broker: str, s3_endpoint: str) -> Settings:
    """Fresh topics, group and bucket per test, so tests on the shared broker never see each other."""
    return _fresh_settings(broker, s3_endpoint)


@pytest.fixture(scope="module")
def module_settings(request: pytest.FixtureRequest, broker: str, s3_endpoint: str) -> Settings:
    """Topics, group and bucket of the module's own, for the tests sharing `module_worker`; the module's
    MODULE_WORKER_OVERRIDES (a dict) adjusts them."""
    return _fresh_settings(broker, s3_endpoint, **getattr(request.module, "MODULE_WORKER_OVERRIDES", {}))


@pytest.fixture(scope="session")
def tiny_renderer() -> Iterator[Renderer]:
    """The tiny pipeline loaded once for the session; each worker shares it (renders are serialised)."""
    renderer = Renderer(lambda: load_model("tiny", device=torch.device("cpu"), dtype=torch.float32))
    yield renderer
    renderer.close()


@pytest.fixture
def template_pool_renderer() -> Iterator[Renderer]:
    """The template renderer (no model) for a template-pool worker of one test."""
    renderer = template_renderer()
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

    async def finished(self, *, timeout_s: float = 60) -> int:
        """The exit code of a worker started with `burst=True`, once it answered everything and left its group."""
        return await asyncio.wait_for(asyncio.shield(self.task), timeout_s)


async def _start(
    settings: Settings, renderer: Renderer, running: list[RunningWorker], **serve_options: Any
) -> RunningWorker:
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    progress: list[tuple[str, int, int]] = []
    task = asyncio.create_task(
        serve(
            settings,
            stop,
            renderer=renderer,
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


async def _stop_all(running: list[RunningWorker]) -> None:
    for handle in running:
        if not handle.task.done():
            await handle.shutdown()


@pytest.fixture
async def start_worker(
    tiny_renderer: Renderer, make_renderer: Callable[[object], Renderer]
) -> AsyncIterator[Callable[..., Any]]:
    running: list[RunningWorker] = []

    async def start(settings: Settings, *, renderer: Renderer | None = None, **serve_options: Any) -> RunningWorker:
        return await _start(settings, renderer or tiny_renderer, running, **serve_options)

    yield start
    await _stop_all(running)


@pytest.fixture(scope="module")
async def module_worker(
    module_settings: Settings, module_kafka: KafkaClient, tiny_renderer: Renderer
) -> AsyncIterator[RunningWorker]:
    """One worker with the tiny model for the whole module, on `module_settings`' topics; ready (partitions
    assigned) before the first test sends anything."""
    running: list[RunningWorker] = []
    worker = await _start(module_settings, tiny_renderer, running)
    await until(lambda: metric(worker.http_port, "vidgen_rebalances_total"))
    yield worker
    await _stop_all(running)


@contextlib.asynccontextmanager
async def _kafka_client(settings: Settings) -> AsyncIterator[KafkaClient]:
    await ensure_topics(settings, worker_topics(settings))
    client = KafkaClient(settings)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@contextlib.asynccontextmanager
async def _object_store(settings: Settings) -> AsyncIterator[ObjectStore]:
    async with open_s3_client(settings) as client:
        store = ObjectStore(client, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        await store.ensure_bucket()
        yield store


@pytest.fixture
async def kafka(settings: Settings) -> AsyncIterator[KafkaClient]:
    async with _kafka_client(settings) as client:
        yield client


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ObjectStore]:
    async with _object_store(settings) as made:
        yield made


@pytest.fixture(scope="module")
async def module_kafka(module_settings: Settings) -> AsyncIterator[KafkaClient]:
    """The client of the tests sharing `module_worker`: they read back their own ids (`results_for`)."""
    async with _kafka_client(module_settings) as client:
        yield client


@pytest.fixture(scope="module")
async def module_store(module_settings: Settings) -> AsyncIterator[ObjectStore]:
    """The module worker's bucket, shared by the module's tests (object keys come from content)."""
    async with _object_store(module_settings) as made:
        yield made
