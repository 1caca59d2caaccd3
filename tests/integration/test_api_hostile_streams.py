"""One tenant's event streams and calls must not take the API's connections (issue 22): a cap on each tenant's open
streams (429 too_many_streams), a cap on each tenant's calls in hand, its share of the connections (429
too_many_connections), streams that end after a while without a change, and probes on a port of their own that a
full API never refuses. The flood runs against `vidgen api` in its own process; the rest against the API served in
this process by its real `serve()`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.hostile_api import started_api, stream_flood
from bench.hostile_clients import Stalled, stalled_upload
from consumer.dev.embedded import isolated_settings
from tests.integration.api_helpers import ApiStack, bearer

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]

API_OVERRIDES = {"max_connections": 40, "max_streams_per_tenant": 3, "stream_idle_s": 8.0}  # a share of 10 calls
_BODY = {"prompt": "a green vase", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}


async def test_one_tenants_stream_flood_leaves_the_api_to_everyone_else(
    broker: str, s3_endpoint: str, tmp_path: Path
) -> None:
    """The issue's flood: with 60 connections, tenant B opened 60 streams on its queued job within its rate limit,
    and A's calls, /healthz and /readyz all got 503 until B let go."""
    settings = isolated_settings(broker, s3_endpoint, "flood" + uuid.uuid4().hex[:8], topic_partitions=1)
    async with started_api(settings, tmp_path, max_connections=60) as (running, keys):
        figures = await stream_flood(running, keys, streams=60)
    assert figures["b_refused"] is not None and figures["b_refused"]["status"] == 429, figures
    assert figures["b_refused"]["code"] in {"too_many_streams", "too_many_connections"}, figures
    assert figures["b_streams_open"] <= 15, figures  # a quarter of the connections at most
    expected = {"a_get_job": 200, "a_list": 200, "a_submit": 202, "a_stream": 200, "healthz": 200, "readyz": 200}
    assert {name: figures[name]["status"] for name in expected} == expected, figures
    assert figures["console"]["status"] == 200, figures
    assert all(figures[name]["ms"] < 5_000 for name in expected), figures


async def _submit(stack: ApiStack, tenant: str) -> str:
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.post(f"{stack.url}/v1/videos", json=_BODY) as response,
    ):
        assert response.status == 202, await response.text()
        job_id: str = (await response.json())["id"]
        return job_id


@contextlib.asynccontextmanager
async def _streams(
    stack: ApiStack, tenant: str, job_id: str, count: int
) -> AsyncIterator[list[aiohttp.ClientResponse]]:
    """`count` open streams of `tenant` (each on a connection of its own), closed at the end."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        opened = []
        try:
            for _ in range(count):
                response = await http.get(f"{stack.url}/v1/videos/{job_id}/events", headers=bearer(stack.keys[tenant]))
                assert response.status == 200, await response.text()
                opened.append(response)
            yield opened
        finally:
            for response in opened:
                response.close()


async def _get(stack: ApiStack, tenant: str, path: str) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body (None for an event stream, which is not read)."""
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.get(f"{stack.url}{path}") as response,
    ):
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, dict(response.headers), body


async def _until_answered(stack: ApiStack, tenant: str, path: str, status: int) -> None:
    """Until `path` answers `status` (what was held is given back when the API notices the client left)."""
    async with asyncio.timeout(15):
        while (await _get(stack, tenant, path))[0] != status:  # noqa: ASYNC110 - the API's own time
            await asyncio.sleep(0.05)


async def test_a_tenant_holds_at_most_its_cap_of_streams(api_stack: ApiStack) -> None:
    job_1, job_2 = await _submit(api_stack, "shop-1"), await _submit(api_stack, "shop-2")
    async with _streams(api_stack, "shop-1", job_1, 3) as held:
        status, headers, body = await _get(api_stack, "shop-1", f"/v1/videos/{job_1}/events")
        assert status == 429 and body["error"]["code"] == "too_many_streams", body
        assert int(headers["Retry-After"]) >= 1
        async with _streams(api_stack, "shop-2", job_2, 1):
            pass  # another tenant's streams are its own
        held.pop().close()
        await _until_answered(api_stack, "shop-1", f"/v1/videos/{job_1}/events", 200)  # the place it left


async def test_a_tenants_calls_in_hand_are_bounded_by_its_share_of_the_connections(api_stack: ApiStack) -> None:
    """Ten uploads that stall mid-body hold all of shop-1's share (a quarter of 40 connections); its next call gets
    429 too_many_connections, while shop-2's are answered; once they are gone shop-1 is served again."""
    port = int(api_stack.url.rsplit(":", 1)[1])
    auth = bearer(api_stack.keys["shop-1"])
    stalls: list[Stalled] = [
        await stalled_upload(port, declared=10_000, send=100, headers=auth, answer_timeout_s=0.2) for _ in range(10)
    ]
    try:
        assert all(stall.status is None for stall in stalls)  # each in hand, waiting for its body
        status, headers, body = await _get(api_stack, "shop-1", "/v1/queue")
        assert status == 429 and body["error"]["code"] == "too_many_connections", body
        assert int(headers["Retry-After"]) >= 1
        assert (await _get(api_stack, "shop-2", "/v1/queue"))[0] == 200
    finally:
        for stall in stalls:
            stall.writer.close()
    await _until_answered(api_stack, "shop-1", "/v1/queue", 200)


async def test_a_stream_whose_job_does_not_change_ends_after_the_idle_time(api_stack: ApiStack) -> None:
    job_id = await _submit(api_stack, "shop-2")
    async with aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-2"])) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.get(f"{api_stack.url}/v1/videos/{job_id}/events") as response:
            assert response.status == 200
            text = await asyncio.wait_for(response.text(), 20)  # the server ends it
        elapsed = loop.time() - started
    assert text.count("event: status") == 1  # the job as it was, then nothing changed
    assert api_stack.api.stream_idle_s <= elapsed < api_stack.api.stream_idle_s + 5
    async with aiohttp.ClientSession() as http, http.get(f"{api_stack.operator_url}/metrics") as response:
        assert 'vidgen_api_stream_ends_total{reason="idle"}' in await response.text()
