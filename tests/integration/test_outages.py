"""Delivery guarantees through outages, against the real broker and S3 server: S3 down (the worker unready, requests
round the retry topic, then completed), transient failures that never end (retry rounds, then a failed result and
a dead letter), the broker cut off mid-render (the result waits it out). Each test ends on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from consumer.dev.embedded import TcpProxy, free_port, kafka_broker
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from tests.support import KafkaClient, SlowPipeline, http_get, metric, ready, request_body, until


@pytest.fixture
async def s3_proxy(s3_endpoint: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    await proxy.start()
    yield proxy
    await proxy.close()


async def _worker_via(proxy: TcpProxy, settings: Settings, start_worker, **retries: Any) -> Any:
    """A worker reaching S3 through `proxy` with the retry settings given, once it holds its partitions."""
    via_proxy = settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}", **retries})
    worker = await start_worker(via_proxy)
    await until(lambda: metric(worker.http_port, "vidgen_rebalances_total"))
    return worker


@pytest.mark.timeout(180)
async def test_s3_outage_makes_the_worker_unready_and_every_request_completes_after(
    settings: Settings, kafka: KafkaClient, store: ObjectStore, start_worker, s3_proxy: TcpProxy
) -> None:
    worker = await _worker_via(
        s3_proxy, settings, start_worker, retry_backoff_s=0.5, retry_topic_delay_s=2, retry_topic_rounds=10
    )
    s3_proxy.cut()
    outage_started = time.monotonic()
    for index in range(3):
        await kafka.send(request_body(f"outage-{index}"))
    status, body = await http_get(worker.http_port, "/readyz")
    assert status == 503 and "object storage unreachable" in body
    # Until the requests have gone round the retry topic (their in-process retries ran out: 0.5 s then 1 s of
    # backoff), then a deliberate duration: S3 stays down for at least 8 s, so they go round it again (2 s delay).
    await kafka.read(settings.retry_topic, 1, timeout_s=60)
    await asyncio.sleep(max(0.0, 8 - (time.monotonic() - outage_started)))
    s3_proxy.restore()
    results = await kafka.results(3, timeout_s=120)
    assert all(result.status == "completed" for result in results.values())
    assert max(result.attempt for result in results.values()) > 1
    assert (await http_get(worker.http_port, "/readyz"))[0] == 200


@pytest.mark.timeout(180)
async def test_transient_failures_go_through_the_retry_topic_then_fail_for_good(
    settings: Settings, kafka: KafkaClient, start_worker, s3_proxy: TcpProxy
) -> None:
    await _worker_via(
        s3_proxy,
        settings,
        start_worker,
        retry_attempts=2,
        retry_backoff_s=0.1,
        retry_topic_delay_s=1,
        retry_topic_rounds=2,
    )
    s3_proxy.cut()
    await kafka.send(
        request_body("doomed-1"), headers=[("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    )
    result = (await kafka.results(1, timeout_s=120))["doomed-1"]
    assert result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("storage_unavailable", True)
    assert result.attempt == 6  # 2 in process x (first delivery + 2 retry-topic rounds)
    retries = await kafka.read(settings.retry_topic, 2)
    assert [dict(r.headers)["vidgen-retry-round"] for r in retries] == [b"1", b"2"]
    assert dict(retries[0].headers)["traceparent"].startswith(b"00-" + b"1" * 32)  # the trace travels along
    dead = await kafka.read(settings.dlq_topic, 1)
    assert dict(dead[0].headers)["vidgen-error-code"] == b"storage_unavailable"
    assert await kafka.wait_committed(1) >= 1


@pytest.mark.timeout(180)
async def test_broker_cut_makes_the_worker_unready_and_it_completes_after(
    settings: Settings, tmp_path, start_worker, make_renderer
) -> None:
    proxy = TcpProxy(free_port())
    with kafka_broker(proxy.target_port, advertised_port=proxy.port, log_path=tmp_path / "tansu.log"):
        await proxy.start()
        try:
            cut_settings = settings.model_copy(
                update={
                    "kafka_bootstrap_servers": f"127.0.0.1:{proxy.port}",
                    "session_timeout_ms": 3_000,  # evicted 3 s into the outage
                    "heartbeat_interval_ms": 300,
                }
            )
            client = KafkaClient(cut_settings)
            await client.start()
            slow = make_renderer(SlowPipeline(step_s=1.0))
            worker = await start_worker(cut_settings, renderer=slow)
            await until(lambda: metric(worker.http_port, "vidgen_rebalances_total"))
            await client.send(request_body("cut-1", num_inference_steps=4))
            await until(lambda: metric(worker.http_port, "vidgen_inflight_jobs"))
            proxy.cut()  # the render finishes during the outage; publishing has to wait it out
            cut_at = time.monotonic()
            await until(lambda: _unready_because(worker.http_port, "Kafka brokers unreachable"))
            # A deliberate duration, not a wait for anything: the brokers stay unreachable for 8 s, more than twice
            # the session timeout, so the group has evicted the worker when they come back (the outage figures
            # of docs/concepts/delivery.md are the same with 30 s and the default timeouts).
            await asyncio.sleep(max(0.0, 8 - (time.monotonic() - cut_at)))
            proxy.restore()
            results = await client.results(1, timeout_s=90)
            assert results["cut-1"].status == "completed"
            assert await client.wait_committed(1, timeout_s=60) == 1
            await until(lambda: ready(worker.http_port), timeout_s=30)
            assert await worker.shutdown() == 0  # while its broker still exists
            await client.stop()
        finally:
            await proxy.close()


async def _unready_because(port: int, reason: str) -> bool:
    status, body = await http_get(port, "/readyz")
    return status == 503 and reason in body
