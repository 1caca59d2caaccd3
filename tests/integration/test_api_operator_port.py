"""The probes and metrics on the operator port (issue 22): not on the API's port, answered while a tenant holds every
connection of the API's, and `/readyz` asks Kafka and S3 at most once per `VIDGEN_API_READINESS_CACHE_S` however
often it is called (counted by taps in proxies in front of a broker and an S3 server of this module's own)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bench.hostile_api import readiness_flood, started_api
from bench.hostile_clients import KafkaRequestCount, S3RequestCount
from consumer.dev.embedded import TcpProxy, free_port, isolated_settings, kafka_broker
from tests.integration.api_helpers import ApiStack, IdentityProvider, api_settings, bearer, new_key, running_api

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]

_KAFKA_METADATA = 3


@dataclass
class Tapped:
    bootstrap: str
    s3_endpoint: str
    s3_heads: S3RequestCount
    kafka_metadata: KafkaRequestCount


@pytest.fixture(scope="module")
async def tapped(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Tapped]:
    """A broker of this module's own, advertised through a proxy (so every connection to it passes one), and the
    S3 server behind a proxy; each proxy counts the requests a readiness check makes."""
    s3_heads, kafka_metadata = S3RequestCount(b"HEAD /"), KafkaRequestCount(_KAFKA_METADATA)
    broker_port, proxy_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("tapped") / "tansu.log"
    with kafka_broker(broker_port, advertised_port=proxy_port, log_path=log):
        kafka_proxy = TcpProxy(broker_port, port=proxy_port, tap=kafka_metadata)
        s3_proxy = TcpProxy(int(s3_endpoint.rsplit(":", 1)[1]), tap=s3_heads)
        await kafka_proxy.start()
        await s3_proxy.start()
        try:
            yield Tapped(f"127.0.0.1:{proxy_port}", f"http://127.0.0.1:{s3_proxy.port}", s3_heads, kafka_metadata)
        finally:
            await kafka_proxy.close()
            await s3_proxy.close()


async def test_a_readyz_flood_asks_kafka_and_s3_at_most_once_per_cache_period(tapped: Tapped, tmp_path: Path) -> None:
    """Before, each /readyz asked both, at whatever rate callers chose (61 a second each here)."""
    settings = isolated_settings(tapped.bootstrap, tapped.s3_endpoint, "ready" + uuid.uuid4().hex[:8])
    async with started_api(settings, tmp_path, readiness_cache_s=2.0) as (running, _):
        figures = await readiness_flood(running, tapped.s3_heads, tapped.kafka_metadata, clients=20, seconds=4.0)
    assert figures["readyz_per_s"] >= 20 and set(figures["readyz_statuses"]) == {"200"}, figures
    # At most one look per 2 s (0.5 a second, and one more at the window's edge); the view's own metadata calls
    # come on top, rarely.
    assert figures["s3_head_per_s"] <= 1.0, figures
    assert figures["kafka_metadata_per_s"] <= 1.5, figures


async def test_probes_and_metrics_answer_on_the_operator_port_only(api_stack: ApiStack) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/healthz", "/readyz", "/metrics"):
            async with http.get(f"{api_stack.url}{path}") as response:
                assert response.status == 404, path
            async with http.get(f"{api_stack.operator_url}{path}") as response:
                assert response.status == 200, path
                if path == "/metrics":
                    assert "vidgen_api_connection_events_total" in await response.text()
        async with http.get(f"{api_stack.url}/openapi.json") as response:
            assert response.status == 200 and "/readyz" not in (await response.json())["paths"]


async def test_the_probes_answer_while_a_tenant_holds_every_connection_of_the_api(
    broker: str, s3_endpoint: str, tmp_path: Path, identity: IdentityProvider
) -> None:
    """Four connections, all held by one tenant's event streams (being handled: never evicted): a newcomer to the
    API's port is refused, the probes are not."""
    settings = isolated_settings(broker, s3_endpoint, "full" + uuid.uuid4().hex[:8], topic_partitions=1)
    api = api_settings(tmp_path, identity.url, max_connections=4, tenant_connection_share=1.0)
    key = new_key(api, "shop-1")
    async with running_api(settings, api) as server, aiohttp.ClientSession(headers=bearer(key)) as http:
        async with http.post(f"{server.url}/v1/videos", json={"prompt": "a mug", "width": 256, "height": 256}) as r:
            job = await r.json()
        streams = aiohttp.ClientSession(headers=bearer(key), connector=aiohttp.TCPConnector(limit=0))
        held = [await streams.get(f"{server.url}/v1/videos/{job['id']}/events") for _ in range(4)]
        try:
            assert [response.status for response in held] == [200] * 4
            reader, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
            writer.write(b"GET /v1/queue HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 503 ")
            writer.close()
            async with aiohttp.ClientSession() as operator:
                for path in ("/healthz", "/readyz"):
                    async with operator.get(f"{server.operator_url}{path}") as response:
                        assert response.status == 200, path
        finally:
            for response in held:
                response.close()
            await streams.close()
