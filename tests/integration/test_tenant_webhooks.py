"""Tenant webhooks end to end, as deployed: `vidgen api` and the notifier (`python -m producer_examples.notifier`) as
processes, a real worker rendering with the tiny model, the real broker and S3 server, and an HTTPS receiver on
loopback (its certificate names `localhost`, which both processes are told may be internal; the notifier trusts the
receiver's CA through `SSL_CERT_FILE`). Every delivery is checked with `standardwebhooks.Webhook(secret).verify`,
unchanged."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from bench.webhooks import result_value
from consumer.dev.embedded import free_port, isolated_settings
from consumer.kafka.clients import client_options
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.worker.wiring import serve
from producer_examples.signing import verify
from schemas.events import VideoResult
from tests.integration.api_helpers import ApiProcess, IdentityProvider, api_settings, bearer, new_key, process_env
from tests.integration.webhook_helpers import Delivery, NotifierProcess, Receiver, start_receiver, topic_records
from tests.support import SMALL, SlowPipeline

pytest_plugins = ["tests.integration.api_fixtures"]

OPERATOR_SECRET = "operator-secret-of-shop-ops-0123456789"
OVERLAP_S = 8.0
STEP_S = 0.25


@dataclass
class Stack:
    settings: Settings
    api_url: str
    keys: dict[str, str]
    receiver: Receiver

    async def call(self, method: str, path: str, tenant: str = "shop-1", **options: Any) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession(headers=bearer(self.keys[tenant])) as http,
            http.request(method, f"{self.api_url}{path}", **options) as response,
        ):
            return response.status, await response.json()

    async def endpoint(self, path: str, events: list[str], tenant: str = "shop-1") -> dict[str, Any]:
        status, created = await self.call(
            "POST", "/v1/webhooks", tenant, json={"url": f"{self.receiver.url}{path}", "events": events}
        )
        assert status == 201, created
        return dict(created)

    async def submit(self, tenant: str = "shop-1", **fields: Any) -> str:
        body = {"prompt": "a red sneaker turning", **SMALL, **fields}
        status, job = await self.call("POST", "/v1/videos", tenant, json=body)
        assert status == 202, job
        return str(job["id"])


@pytest.fixture(scope="module")
async def stack(
    broker: str, s3_endpoint: str, identity: IdentityProvider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    run = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("webhooks")
    settings = isolated_settings(
        broker,
        s3_endpoint,
        run,
        topic_partitions=2,
        webhook_secrets_key=Fernet.generate_key().decode(),
        webhook_allow_hosts=("localhost",),
        webhook_rotation_overlap_s=OVERLAP_S,
        progress_interval_s=0.0,  # the worker reports every step; the notifier's throttle is what is tested
        http_host="127.0.0.1",
        http_port=0,
        worker_id=f"webhooks-{run}",
    )
    receiver, receiver_runner = await start_receiver(home)
    api = api_settings(home, identity.url, port=free_port(), operator_port=free_port())
    keys = {tenant: new_key(api, tenant) for tenant in ("shop-1", "shop-2", "shop-ops")}
    api_process = ApiProcess(process_env(settings, api), home / "api.log", api.port, api.operator_port)
    operator = {"shop-ops": {"url": f"{receiver.url}/ops", "secret": OPERATOR_SECRET}}
    notifier = NotifierProcess(settings, receiver, operator, home / f"{run}.log", free_port())
    renderer = Renderer(lambda: SlowPipeline(step_s=STEP_S))
    stop = asyncio.Event()
    worker = asyncio.create_task(serve(settings, stop, renderer=renderer))
    try:
        api_process.start()
        notifier.start()
        await api_process.ready()
        await notifier.ready()
        yield Stack(settings, api_process.url, keys, receiver)
    finally:
        notifier.stop()
        api_process.stop(kill=True)
        stop.set()
        await asyncio.wait_for(worker, 60)
        renderer.close()
        await receiver_runner.cleanup()


def _events(deliveries: list[Delivery], path: str, video_id: str, event_type: str) -> list[Delivery]:
    found = []
    for delivery in deliveries:
        body = json.loads(delivery.body)
        if delivery.path == path and body.get("type") == event_type and body["data"]["id"] == video_id:
            found.append(delivery)
    return found


async def test_a_rendered_job_reaches_the_tenants_endpoint_signed_and_shaped_like_openais(stack: Stack) -> None:
    endpoint = await stack.endpoint("/done", ["video.completed", "video.failed"])
    job = await stack.submit()
    [delivery] = _events(
        await stack.receiver.until(lambda seen: bool(_events(seen, "/done", job, "video.completed"))),
        "/done",
        job,
        "video.completed",
    )
    body = StandardWebhook(endpoint["secret"]).verify(delivery.body, delivery.headers)
    assert set(body) == {"id", "object", "type", "created_at", "data"}
    assert (body["object"], body["data"], body["id"]) == ("event", {"id": job}, delivery.headers["webhook-id"])
    assert abs(body["created_at"] - time.time()) < 300
    assert not {"X-Vidgen-Signature", "X-Vidgen-Delivery"} & set(delivery.headers)  # the old scheme: operators only
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(endpoint["secret"]).verify(delivery.body + b" ", delivery.headers)


async def test_a_cancelled_job_is_delivered_as_video_failed(stack: Stack) -> None:
    endpoint = await stack.endpoint("/failed", ["video.failed"])
    job = await stack.submit(num_inference_steps=60)  # 15 s of render: cancelled long before it ends
    async with asyncio.timeout(60):
        # Another process's view: only its API can say.
        while (await stack.call("GET", f"/v1/videos/{job}"))[1]["status"] != "in_progress":  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert (await stack.call("POST", f"/v1/videos/{job}/cancel"))[0] == 202
    seen = await stack.receiver.until(lambda seen: bool(_events(seen, "/failed", job, "video.failed")))
    [delivery] = _events(seen, "/failed", job, "video.failed")
    StandardWebhook(endpoint["secret"]).verify(delivery.body, delivery.headers)
    async with asyncio.timeout(60):
        # The notifier and the API's view read the results apart: the webhook can arrive before the view has it.
        while (view := (await stack.call("GET", f"/v1/videos/{job}"))[1])["status"] == "in_progress":  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert view["error"]["code"] == "cancelled"
    assert not [d for d in seen if d.path == "/failed" and b"video.completed" in d.body]  # not subscribed


async def test_progress_reaches_subscribers_at_most_once_a_second_per_job(stack: Stack) -> None:
    endpoint = await stack.endpoint("/progress", ["video.progress", "video.completed"])
    job = await stack.submit(num_inference_steps=16)  # 4 s of steps, a progress record each
    await stack.receiver.until(lambda seen: bool(_events(seen, "/progress", job, "video.completed")))
    progress = _events(stack.receiver.received, "/progress", job, "video.progress")
    records = [r for r in await topic_records(stack.settings, stack.settings.progress_topic) if r.key == job.encode()]
    assert len(records) >= 16 and 1 <= len(progress) < len(records)
    span_s = progress[-1].at - progress[0].at
    assert len(progress) <= span_s + 2, [round(d.at - progress[0].at, 2) for d in progress]
    for delivery in progress:
        body = StandardWebhook(endpoint["secret"]).verify(delivery.body, delivery.headers)
        assert 0 <= body["data"]["progress"] <= 100


async def _result(stack: Stack, tenant: str, request_id: str) -> None:
    """A result straight onto the results topic, as a worker would publish it: the notifier cannot tell."""
    producer = AIOKafkaProducer(**client_options(stack.settings))
    await producer.start()
    try:
        value = result_value(request_id, tenant)
        await producer.send_and_wait(stack.settings.results_topic, key=request_id.encode(), value=value)
    finally:
        await producer.stop()


async def _delivered(stack: Stack, path: str, request_id: str) -> Delivery:
    seen = await stack.receiver.until(lambda seen: bool(_events(seen, path, request_id, "video.completed")))
    return _events(seen, path, request_id, "video.completed")[0]


def _verifies(secret: str, delivery: Delivery) -> bool:
    try:
        StandardWebhook(secret).verify(delivery.body, delivery.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(stack: Stack) -> None:
    endpoint = await stack.endpoint("/rotating", ["video.completed"])
    old = endpoint["secret"]
    status, rotated = await stack.call("POST", f"/v1/webhooks/{endpoint['id']}/rotate")
    rotated_at = time.monotonic()
    assert status == 200
    new = rotated["secret"]
    # The notifier applies the rotation when it reads the topic: results until then are signed with the old only.
    for attempt in range(50):
        await _result(stack, "shop-1", f"rot-{attempt}")
        during = await _delivered(stack, "/rotating", f"rot-{attempt}")
        if _verifies(new, during):
            break
    assert time.monotonic() - rotated_at < OVERLAP_S, "too slow to see the overlap; rerun on a quieter machine"
    assert _verifies(old, during) and during.headers["webhook-signature"].count("v1,") == 2
    await asyncio.sleep(max(0.0, OVERLAP_S - (time.monotonic() - rotated_at)) + 1)
    await _result(stack, "shop-1", "rot-after")
    after = await _delivered(stack, "/rotating", "rot-after")
    assert _verifies(new, after) and not _verifies(old, after)


async def test_the_operators_webhook_keeps_the_old_header_and_verifies_the_standard_way(stack: Stack) -> None:
    job = await stack.submit("shop-ops")
    seen = await stack.receiver.until(
        lambda seen: any(json.loads(d.body)["request_id"] == job for d in stack.receiver.at("/ops"))
    )
    [delivery] = [d for d in seen if d.path == "/ops" and json.loads(d.body)["request_id"] == job]
    assert VideoResult.model_validate_json(delivery.body).status == "completed"  # the result itself, as before
    verify(delivery.headers["X-Vidgen-Signature"], delivery.body, [OPERATOR_SECRET], now=time.time(), tolerance_s=300)
    StandardWebhook(OPERATOR_SECRET.encode()).verify(delivery.body, delivery.headers)
    assert delivery.headers["X-Vidgen-Delivery"] == delivery.headers["webhook-id"]


async def test_endpoints_of_another_tenant_get_nothing_of_this_ones(stack: Stack) -> None:
    await stack.endpoint("/shop-2", ["video.completed", "video.failed", "video.progress"], tenant="shop-2")
    job = await stack.submit()
    await stack.receiver.until(lambda seen: any(job.encode() in d.body for d in seen))
    await _result(stack, "shop-2", "shop-2-marker")  # after shop-1's job: delivered after anything of it
    await _delivered(stack, "/shop-2", "shop-2-marker")
    assert [json.loads(d.body)["data"]["id"] for d in stack.receiver.at("/shop-2")] == ["shop-2-marker"]
