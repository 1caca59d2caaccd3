"""Graceful degradation at the product hook against the real broker, S3 server and a template worker, with the GPU
pool stopped: the hook reads the GPU pool's consumer-group offsets, and once the pool is busy (too many requests
unanswered) or down (requests wait and nothing is committed for a while) a shop's product goes to the template pool
and gets a `degraded` video; a shop whose fallback is `none` gets 503 while busy."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from consumer.core.degrade import DEGRADED_REASON_HEADER
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from producer_examples.hook_settings import HookSettings
from producer_examples.product_hook import ROUTE, make_app
from producer_examples.signing import SIGNATURE_HEADER, sign
from tests.support import KafkaClient, metric, product_payload, until

SECRET = "s3cret-for-tests-only"
ID_KEY = "request-id-key-for-tests-only-0123456789"

Post = Callable[..., Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture
async def start_hook(settings: Settings, spans: Any) -> AsyncIterator[Callable[..., Awaitable[tuple[Post, int]]]]:
    """Starts the hook with these settings; returns how to post a signed product and the hook's port."""
    servers: list[TestServer] = []
    async with aiohttp.ClientSession() as http:

        async def start(**overrides: Any) -> tuple[Post, int]:
            options: dict[str, Any] = {
                "secret": SECRET,
                "id_key": ID_KEY,
                "rate_per_s": 100.0,
                "burst": 100,
                "width": 256,
                "height": 256,
                "num_frames": 9,
                "num_inference_steps": 2,
                "pool_check_s": 0.1,
                **overrides,
            }
            app = make_app(HookSettings(**options), settings, tracer=spans[0].get_tracer("test"))
            server = TestServer(app, host="127.0.0.1")
            await server.start_server()
            servers.append(server)

            async def post(product_id: str, shop_id: str = "shop-1") -> tuple[int, dict[str, Any]]:
                body = json.dumps(product_payload(product_id, shop_id=shop_id)).encode()
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(body, SECRET, timestamp=int(time.time())),
                }
                async with http.post(server.make_url(ROUTE), data=body, headers=headers) as response:
                    return response.status, await response.json()

            return post, server.port or 0

        yield start
        for server in servers:
            await server.close()


async def test_busy_gpu_pool_products_get_a_degraded_video_or_503(
    settings: Settings, kafka: KafkaClient, start_hook: Any, template_pool_renderer: Renderer, start_worker: Any
) -> None:
    await start_worker(settings.template_pool(), renderer=template_pool_renderer)
    post, port = await start_hook(max_queued=2, pool_down_s=3600, shop_fallback={"shop-9": "none"})
    first = [await post(f"p-{n}") for n in (1, 2)]
    assert [(status, body["degraded"]) for status, body in first] == [(202, False)] * 2  # queued for the GPU pool
    await until(lambda: _metric_at_least(port, "vidgen_hook_gpu_queue", 2), timeout_s=30, every_s=0.1)

    status, degraded = await post("p-3")
    assert (status, degraded["degraded"], degraded["degraded_reason"]) == (202, True, "busy")
    status, refused = await post("p-4", shop_id="shop-9")  # this shop opted out of the template
    assert (status, refused) == (503, {"error": "busy"})

    result = (await kafka.results(1))[degraded["request_id"]]
    assert (result.status, result.model, result.degraded) == ("completed", "template", True)
    [record] = await kafka.read(settings.template_topic, 1)
    assert dict(record.headers)[DEGRADED_REASON_HEADER] == b"busy"
    assert await metric(port, 'vidgen_hook_degraded_total{reason="busy"}') == 1


async def test_gpu_pool_down_products_get_a_degraded_video(
    settings: Settings, kafka: KafkaClient, start_hook: Any, template_pool_renderer: Renderer, start_worker: Any
) -> None:
    await start_worker(settings.template_pool(), renderer=template_pool_renderer)
    post, port = await start_hook(pool_down_s=1.0)
    status, waiting = await post("p-1")
    assert (status, waiting["degraded"]) == (202, False)  # the GPU pool's, until it counts as down
    await until(lambda: _metric_at_least(port, "vidgen_hook_gpu_pool_down", 1), timeout_s=30, every_s=0.1)

    status, degraded = await post("p-2")
    assert (status, degraded["degraded"], degraded["degraded_reason"]) == (202, True, "pool_down")
    result = (await kafka.results(1))[degraded["request_id"]]
    assert (result.status, result.degraded) == ("completed", True)
    assert await metric(port, 'vidgen_hook_degraded_total{reason="pool_down"}') == 1


async def _metric_at_least(port: int, name: str, value: float) -> bool:
    return await metric(port, name) >= value
