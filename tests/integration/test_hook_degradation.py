"""Graceful degradation at the product hook against the real broker, S3 server and a template worker, with the GPU
pool stopped: the hook reads the GPU pool's consumer-group offsets, and once the pool is busy (too many requests
unanswered) or down (requests wait and nothing is committed for a while) a shop's product goes to the template pool
and gets a `degraded` video; a shop whose fallback is `none` gets 503 while busy. A shop whose fallback is `similar`
gets, for a product it already has a completed video of, that video at once (`similar_to`), and never another
shop's."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from consumer.core.degrade import DEGRADED_REASON_HEADER, FALLBACK_HEADER
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from producer_examples.hook_settings import HookSettings
from producer_examples.product_hook import ROUTE, make_app
from producer_examples.signing import SIGNATURE_HEADER, sign
from schemas.events import VideoResult
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

            async def post(product_id: str, shop_id: str = "shop-1", **fields: str) -> tuple[int, dict[str, Any]]:
                body = json.dumps(product_payload(product_id, shop_id=shop_id, **fields)).encode()
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
    assert (status, refused["error"]["code"], refused["error"]["type"]) == (503, "busy", "server_error")

    result = (await kafka.results(1))[degraded["request_id"]]
    assert (result.status, result.model, result.degraded) == ("completed", "template", True)
    [record] = await kafka.read(settings.template_topic, 1)
    assert dict(record.headers)[DEGRADED_REASON_HEADER] == b"busy"
    assert dict(record.headers)[FALLBACK_HEADER] == b"template"  # the job object's `fallback`, as the API sends it
    gpu_records = await kafka.read(settings.bulk_topic, 2)  # the hook's lane: bulk
    assert [dict(r.headers)[FALLBACK_HEADER] for r in gpu_records] == [b"template"] * 2
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
    status, retried = await post("p-2")  # the platform retries: answered as the first delivery was
    assert (status, retried) == (202, {**degraded, "duplicate": True})
    result = (await kafka.results(1))[degraded["request_id"]]
    assert (result.status, result.degraded) == ("completed", True)
    assert await metric(port, 'vidgen_hook_degraded_total{reason="pool_down"}') == 1


async def test_gpu_pool_down_a_known_product_gets_its_earlier_video_at_once(
    settings: Settings, kafka: KafkaClient, start_hook: Any, template_pool_renderer: Renderer, start_worker: Any
) -> None:
    gpu = await start_worker(settings)
    await start_worker(settings.template_pool(), renderer=template_pool_renderer)
    post, port = await start_hook(pool_down_s=1.0, shop_fallback={"shop-1": "similar", "shop-2": "similar"})
    status, first = await post("p-1")
    assert (status, first["degraded"]) == (202, False)  # rendered by the GPU pool
    earlier = (await kafka.results(1))[first["request_id"]]
    assert (earlier.status, earlier.degraded, earlier.similar_to) == ("completed", False, None)
    await until(lambda: _metric_at_least(port, "vidgen_hook_product_videos", 1), timeout_s=30, every_s=0.1)
    await gpu.shutdown()
    # The pool counted as down while the first product rendered (waiting, nothing committed): until its commit is seen.
    await until(lambda: _metric_at_most(port, "vidgen_hook_gpu_pool_down", 0), timeout_s=30, every_s=0.1)
    status, waiting = await post("p-2")  # waits for the stopped GPU pool, which then counts as down
    assert (status, waiting["degraded"]) == (202, False)
    await until(lambda: _metric_at_least(port, "vidgen_hook_gpu_pool_down", 1), timeout_s=30, every_s=0.1)

    sent = time.time()
    status, again = await post("p-1", title="Red sneaker, new colours")  # an edited product: a new request
    assert (status, again["degraded"], again["degraded_reason"]) == (202, True, "pool_down")
    assert again["similar_to"] == first["request_id"] and again["request_id"] != first["request_id"]
    status, other_shop = await post("p-1", shop_id="shop-2")  # the same product id in another shop: its own
    status, other_product = await post("p-3")
    for answer in (other_shop, other_product):
        assert (answer["degraded"], answer["degraded_reason"], "similar_to" in answer) == (True, "pool_down", False)
    status, retried = await post("p-1", title="Red sneaker, new colours")  # the platform retries
    assert (status, retried) == (202, {**again, "duplicate": True})

    results = await kafka.results(4)  # the first, the similar answer, two template videos; p-2 never rendered
    similar = results[again["request_id"]]
    assert similar.similar_to == first["request_id"] and similar.video == earlier.video
    assert (similar.status, similar.degraded, similar.worker_id, similar.tenant_id) == (
        "completed",
        True,
        "product-hook",
        "shop-1",
    )
    assert similar.metadata == {"product_id": "p-1", "source": "product-created-hook"}
    assert similar.timings.completed_at.timestamp() - sent < 1.0  # answered at once, by the hook's own clock
    for answer in (other_shop, other_product):
        assert (results[answer["request_id"]].model, results[answer["request_id"]].similar_to) == ("template", None)
    [record] = [r for r in await kafka.read(settings.results_topic, 4) if r.key.decode() == again["request_id"]]
    assert dict(record.headers)[DEGRADED_REASON_HEADER] == b"pool_down"
    assert VideoResult.model_validate_json(record.value) == similar
    assert await metric(port, "vidgen_hook_similar_total") == 1


async def _metric_at_least(port: int, name: str, value: float) -> bool:
    return await metric(port, name) >= value


async def _metric_at_most(port: int, name: str, value: float) -> bool:
    return await metric(port, name) <= value
