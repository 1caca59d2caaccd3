"""Graceful degradation at the job API against the real broker, S3 server and workers: with the GPU pool stopped
(no worker on the requests topic) and a template worker running, jobs that allow it are routed to the template pool
and complete `degraded` within seconds; without the fallback they are refused (busy) or wait for a GPU worker
(pool down) and complete when one returns."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.core.degrade import DEGRADED_REASON_HEADER
from consumer.dev.embedded import isolated_settings
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from tests.integration.api_helpers import IdentityProvider, TenantSessions, api_settings, new_key, running_api
from tests.support import KafkaClient, until

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]

SMALL = {"width": 256, "height": 256, "num_frames": 9, "num_inference_steps": 2}


class Api(TenantSessions):
    """One API in this process and a session per tenant."""

    def __init__(self, url: str, operator_url: str, keys: dict[str, str]) -> None:
        super().__init__(url, keys)
        self.operator_url = operator_url

    async def submit(self, tenant: str = "shop-1", **body: Any) -> tuple[int, dict[str, Any]]:
        payload = {"prompt": f"a lamp {uuid.uuid4().hex[:6]}", **SMALL, **body}
        async with self.sessions[tenant].post(f"{self.url}/v1/videos", json=payload) as response:
            return response.status, await response.json()

    async def get(self, path: str, tenant: str = "shop-1") -> dict[str, Any]:
        async with self.sessions[tenant].get(self.url + path) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
            return body

    async def metrics(self) -> str:
        async with self.sessions["shop-1"].get(f"{self.operator_url}/metrics") as response:
            return await response.text()

    async def all_done(self, jobs: list[dict[str, Any]], tenant: str = "shop-1") -> list[dict[str, Any]]:
        """The jobs once every one is terminal (polled: another component moves them)."""

        async def terminal() -> list[dict[str, Any]] | None:
            now = [await self.get(f"/v1/videos/{job['id']}", tenant) for job in jobs]
            return now if all(job["status"] in ("completed", "failed", "rejected") for job in now) else None

        done = await until(terminal, timeout_s=90, every_s=0.1)
        return done


@pytest.fixture
def settings(broker: str, s3_endpoint: str) -> Settings:
    return isolated_settings(
        broker,
        s3_endpoint,
        "deg" + uuid.uuid4().hex[:8],
        topic_partitions=2,
        http_host="127.0.0.1",
        http_port=0,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
    )


@pytest.fixture
async def start_api(
    settings: Settings, tmp_path: Path, identity: IdentityProvider, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    """Starts the API in this process with keys for shop-1 and shop-2; stopped when the test ends."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Api:
            api = api_settings(tmp_path, identity.url, **overrides)
            keys = {tenant: new_key(api, tenant) for tenant in ("shop-1", "shop-2")}
            server = await stack.enter_async_context(running_api(settings, api, tracer=spans[0].get_tracer("test")))
            client = Api(server.url, server.operator_url, keys)
            stack.push_async_callback(client.close)
            return client

        yield start


async def test_gpu_pool_down_ten_jobs_complete_degraded_within_seconds(
    settings: Settings,
    start_api: Callable[..., Awaitable[Api]],
    spans: tuple[TracerProvider, InMemorySpanExporter],
    template_pool_renderer: Renderer,
    start_worker: Any,
) -> None:
    api = await start_api(fallback="template", pool_down_s=1.0)
    await start_worker(settings.template_pool(), renderer=template_pool_renderer)
    # One job that may not degrade waits for the GPU pool, which has no worker: once it has waited a second
    # with no GPU worker seen, the pool is down.
    status, waiting = await api.submit(fallback="none")
    assert (status, waiting["degraded"], waiting["status"]) == (202, False, "queued")
    await until(lambda: _queue_says(api, pool_down=True), timeout_s=30, every_s=0.1)

    started = time.monotonic()
    answers = [await api.submit() for _ in range(10)]
    assert [status for status, _ in answers] == [202] * 10
    assert all((job["degraded"], job["degraded_reason"]) == (True, "pool_down") for _, job in answers)
    done = await api.all_done([job for _, job in answers])
    seconds = time.monotonic() - started

    for job in done:
        assert (job["status"], job["degraded"], job["degraded_reason"]) == ("completed", True, "pool_down")
        assert job["video"]["num_frames"] == 9 and job["video"]["width"] == 256
    assert seconds < 60  # seconds on a loaded 2-core machine, where the GPU pool would never answer
    assert (await api.get(f"/v1/videos/{waiting['id']}"))["status"] == "queued"  # still waits for a GPU
    assert 'vidgen_api_degraded_total{reason="pool_down"} 10.0' in await api.metrics()
    server_spans = [span for span in spans[1].get_finished_spans() if span.name == "POST /v1/videos"]
    reasons = [(span.attributes or {}).get("vidgen.degraded_reason") for span in server_spans]
    assert reasons.count("pool_down") == 10 and reasons.count(None) == 1


async def test_busy_without_the_fallback_is_refused_with_it_degraded(
    settings: Settings, start_api: Callable[..., Awaitable[Api]], template_pool_renderer: Renderer, start_worker: Any
) -> None:
    """The service default is `none`; shop-2's tenant default is `template`; a request's own choice wins. Busy is
    judged per tenant: shop-2's first job is within its share of the full pool and goes to the GPU pool."""
    api = await start_api(max_queued=2, pool_down_s=3600, tenant_fallback={"shop-2": "template"})
    await start_worker(settings.template_pool(), renderer=template_pool_renderer)
    queued = [await api.submit() for _ in range(2)]
    assert [(status, job["degraded"]) for status, job in queued] == [(202, False)] * 2
    status, refused = await api.submit()
    assert (status, refused["error"]["code"]) == (503, "queue_full")
    status, own_choice = await api.submit(fallback="template")
    status_2, within_share = await api.submit("shop-2")  # the pool is full, but shop-2 has nothing queued
    assert (status_2, within_share["degraded"]) == (202, False)
    status_2, tenant_default = await api.submit("shop-2")  # now at its share of 2 / 2 tenants
    assert (status, own_choice["degraded"], own_choice["degraded_reason"]) == (202, True, "busy")
    assert (status_2, tenant_default["degraded"], tenant_default["degraded_reason"]) == (202, True, "busy")
    status, opted_out = await api.submit("shop-2", fallback="none")
    assert (status, opted_out["error"]["code"]) == (503, "queue_full")
    status, bad = await api.submit(fallback="always")
    assert (status, bad["error"]["code"], bad["error"]["field"]) == (422, "invalid_field", "fallback")

    (mine,) = await api.all_done([own_choice])
    (theirs,) = await api.all_done([tenant_default], "shop-2")
    assert (mine["status"], mine["degraded"], theirs["status"], theirs["degraded"]) == (
        "completed",
        True,
        "completed",
        True,
    )
    assert "fallback" not in mine["request"]  # the API's own field never reaches the workers
    queue = await api.get("/v1/queue")
    assert (queue["queued"], queue["template_queued"], queue["pool_down"]) == (3, 0, False)
    text = await api.metrics()
    assert 'vidgen_api_degraded_total{reason="busy"} 2.0' in text
    assert 'vidgen_api_shed_total{reason="queue_full"} 2.0' in text

    client = KafkaClient(settings)
    await client.start()
    try:
        records, _ = await client.read_to_end(settings.template_topic)
        requests, _ = await client.read_to_end(settings.requests_topic)
    finally:
        await client.stop()
    assert sorted(dict(record.headers)[DEGRADED_REASON_HEADER] for record in records) == [b"busy", b"busy"]
    assert len(requests) == 3


@pytest.mark.timeout(120)
async def test_pool_down_without_the_fallback_jobs_wait_and_complete_when_a_gpu_worker_returns(
    settings: Settings, start_api: Callable[..., Awaitable[Api]], template_pool_renderer: Renderer, start_worker: Any
) -> None:
    api = await start_api(pool_down_s=1.0)  # the service default fallback: none
    await start_worker(
        settings.template_pool(), renderer=template_pool_renderer
    )  # there, but these jobs may not use it
    # The tiny model's smallest video: the GPU pool's renders are the slow part of this test.
    first = [await api.submit(num_frames=5) for _ in range(2)]
    await until(lambda: _queue_says(api, pool_down=True), timeout_s=30, every_s=0.1)
    later = [await api.submit(num_frames=5)]
    jobs = [job for _, job in first + later]
    assert all(job["status"] == "queued" and not job["degraded"] for job in jobs)

    await start_worker(settings)  # the GPU pool returns (the tiny model)
    done = await api.all_done(jobs)
    assert all((job["status"], job["degraded"]) == ("completed", False) for job in done)
    await until(lambda: _queue_says(api, pool_down=False), timeout_s=30, every_s=0.1)
    assert "vidgen_api_degraded_total{" not in await api.metrics()


async def _queue_says(api: Api, *, pool_down: bool) -> bool:
    return (await api.get("/v1/queue"))["pool_down"] is pool_down
