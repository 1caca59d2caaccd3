"""The producer examples against the real broker, the real S3 server and real HTTP on loopback: the hook, the
notifier and publish_request."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.dev.embedded import free_port
from consumer.kafka.clients import client_options, ensure_topics
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from producer_examples import command_line, publish_request
from producer_examples.dedupe import delivery_key
from producer_examples.delivery import DELIVERY_HEADER
from producer_examples.hook_settings import HookSettings
from producer_examples.notifier import serve
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.product_hook import ROUTE, make_app
from producer_examples.signing import SIGNATURE_HEADER, sign, verify
from schemas.events import Timings, VideoRequest, VideoResult
from tests.support import KafkaClient, Tls, http_get, loopback_tls, metric, product_payload

SECRET = "s3cret-for-tests-only"
ID_KEY = "request-id-key-for-tests-only-0123456789"
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def _trace_id(traceparent: bytes | str) -> str:
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    return text.split("-")[1]


# ------------------------------------------------------------------------------ product hook over real HTTP


@dataclass
class Hook:
    server: TestServer
    http: aiohttp.ClientSession
    exporter: InMemorySpanExporter

    async def post(self, payload: dict[str, Any] | bytes, *, header: str | None = "sign") -> aiohttp.ClientResponse:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if header == "sign":
            headers[SIGNATURE_HEADER] = sign(body, SECRET, timestamp=int(time.time()))
        elif header is not None:
            headers[SIGNATURE_HEADER] = header
        response = await self.http.post(self.server.make_url(ROUTE), data=body, headers=headers)
        await response.read()
        return response


@pytest.fixture
async def hook(settings: Settings, kafka: KafkaClient, spans: Any) -> AsyncIterator[Hook]:
    provider, exporter = spans
    hook_settings = HookSettings(
        secret=SECRET,
        id_key=ID_KEY,
        rate_per_s=0.01,
        burst=2,
        templates={"shop-2": "Showcase of {title}"},
        width=256,
        height=256,
        num_frames=5,
        num_inference_steps=2,
    )
    server = TestServer(make_app(hook_settings, settings, tracer=provider.get_tracer("test")), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Hook(server, http, exporter)
    await server.close()


def _payload(product_id: str = "p-1", **overrides: Any) -> dict[str, Any]:
    # Platforms send more than a video needs.
    return product_payload(
        product_id, **{"image_url": "https://cdn.example.com/p-1.png", "price": "89.00", **overrides}
    )


async def test_hook_accepts_a_signed_webhook_and_publishes_a_traced_request(
    hook: Hook, kafka: KafkaClient, settings: Settings
) -> None:
    response = await hook.post(_payload(shop_id="shop-2"))
    assert response.status == 202
    request_id = (await response.json())["request_id"]

    [record] = await kafka.read(settings.bulk_topic, 1)  # a catalog import: the bulk lane (VIDGEN_HOOK_PRIORITY)
    assert record.key == request_id.encode()
    request = VideoRequest.model_validate_json(record.value)
    assert (request.request_id, request.tenant_id, request.width) == (request_id, "shop-2", 256)
    assert request.priority == "bulk"
    assert request.prompt == "Showcase of Red sneaker"  # the shop's own template
    headers = dict(record.headers)
    [server_span] = _by_name(hook.exporter, f"POST {ROUTE}")
    [producer_span] = _by_name(hook.exporter, f"send {settings.bulk_topic}")
    assert server_span.kind == SpanKind.SERVER and producer_span.kind == SpanKind.PRODUCER
    assert producer_span.parent is not None and producer_span.parent.span_id == server_span.context.span_id
    assert _trace_id(headers["traceparent"]) == f"{server_span.context.trace_id:032x}"
    assert producer_span.attributes is not None
    assert producer_span.attributes["messaging.destination.name"] == settings.bulk_topic
    assert producer_span.attributes["messaging.kafka.message.key"] == request_id
    assert server_span.attributes is not None and server_span.attributes["http.response.status_code"] == 202
    async with hook.http.get(hook.server.make_url("/healthz")) as health:
        assert health.status == 200
    assert await http_get(hook.server.port or 0, "/readyz") == (200, '{"status": "ready", "checks": {"kafka": "ok"}}')
    accepted = f'vidgen_hook_requests_total{{method="POST",route="{ROUTE}",status="202"}}'
    assert await metric(hook.server.port or 0, accepted) == 1


async def test_hook_refuses_bad_signatures_with_401(hook: Hook) -> None:
    body = json.dumps(_payload()).encode()
    stale = sign(body, SECRET, timestamp=int(time.time()) - 3600)
    for header in (None, "t=1,v1=nothex", sign(body, "not-the-secret-xxxx", timestamp=int(time.time())), stale):
        response = await hook.post(body, header=header)
        assert response.status == 401
    error = (await response.json())["error"]
    assert (error["code"], error["message"], error["field"]) == (
        "invalid_signature", f"{SIGNATURE_HEADER} refused: stale", SIGNATURE_HEADER
    )  # fmt: skip


async def test_hook_names_the_bad_fields_with_422(hook: Hook) -> None:
    payload = _payload(image_url="http://insecure.example.com/x.png", product_id="has spaces")
    del payload["title"]
    response = await hook.post(payload)
    assert response.status == 422
    error = (await response.json())["error"]  # the job API's shape: every problem in the message, the first's field
    problems = dict(problem.split(": ", 1) for problem in error["message"].split("; "))
    assert set(problems) == {"title", "image_url", "product_id"} and error["field"] in problems
    assert "has spaces" not in error["message"] and "insecure" not in error["message"]  # nothing sent is echoed
    not_json = await hook.post(b"not json")
    assert (not_json.status, (await not_json.json())["error"]["code"]) == (422, "invalid_json")


async def test_hook_rate_limits_each_shop_with_429(hook: Hook) -> None:
    assert [(await hook.post(_payload(f"p-{i}"))).status for i in range(2)] == [202, 202]
    limited = await hook.post(_payload("p-3"))
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert (await hook.post(_payload("p-3", shop_id="shop-9"))).status == 202  # other shops are unaffected


async def test_a_retried_webhook_gets_the_same_request_id_and_is_not_republished(
    hook: Hook, kafka: KafkaClient, settings: Settings
) -> None:
    first = await (await hook.post(_payload())).json()
    retried = await (await hook.post(_payload(price="79.00"))).json()  # irrelevant fields may differ
    assert retried == {"request_id": first["request_id"], "duplicate": True, "degraded": False}
    other = await (await hook.post(_payload("p-2"))).json()
    records = await kafka.read(settings.bulk_topic, 2)
    assert sorted(r.key.decode() for r in records) == sorted([first["request_id"], other["request_id"]])


# --------------------------------------------------------------------------- notifier: real broker, real HTTPS

NOTIFIER_SECRET = "notifier-secret-of-shop-1-for-tests"  # each tenant has its own; these two share one
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture(scope="module")
def tls() -> Tls:
    return loopback_tls("127.0.0.1")


@dataclass
class Receiver:
    base: str
    statuses: dict[str, int]
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def until(self, predicate: Any, timeout_s: float = 60) -> None:
        async with asyncio.timeout(timeout_s), self.arrived:
            await self.arrived.wait_for(lambda: predicate(self.received))


@pytest.fixture
async def receiver(tls: Tls) -> AsyncIterator[Receiver]:
    holder: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        body = await request.read()
        state = holder[0]
        async with state.arrived:
            state.received.append((tenant, dict(request.headers), body))
            state.arrived.notify_all()
        return web.Response(status=state.statuses.get(tenant, 200))

    app = web.Application()
    app.router.add_post("/hooks/{tenant}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server)
    await site.start()
    holder.append(Receiver(base=f"https://127.0.0.1:{runner.addresses[0][1]}", statuses={}))
    yield holder[0]
    await runner.cleanup()


@dataclass
class RunningNotifier:
    settings: NotifierSettings
    task: asyncio.Task[int]
    stop: asyncio.Event
    port: int


@pytest.fixture
async def notifier(
    settings: Settings, kafka: KafkaClient, receiver: Receiver, spans: Any, tls: Tls
) -> AsyncIterator[Any]:
    provider, _ = spans
    run = uuid.uuid4().hex[:8]
    notifier_settings = NotifierSettings(
        group=f"notifier-{run}",
        dlq_topic=f"notifier-dlq-{run}",
        webhooks={
            tenant: {"url": f"{receiver.base}/hooks/{tenant}", "secret": NOTIFIER_SECRET}
            for tenant in ("shop-1", "shop-down")
        },
        max_attempts=3,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        timeout_s=5,
        host="127.0.0.1",
        port=0,
        shutdown_grace_s=5,
    )
    # Created up front: KafkaClient.read() needs the topic in its metadata when it starts.
    await ensure_topics(settings, [notifier_settings.dlq_topic])
    stop = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            settings,
            notifier_settings,
            stop,
            tracer=provider.get_tracer("test"),
            on_http_port=port.set_result,
            trusted_networks=LOOPBACK,
            ssl_context=tls.client,
        )
    )
    await asyncio.wait([port, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    running = RunningNotifier(notifier_settings, task, stop, port.result())
    yield running
    stop.set()
    await asyncio.wait_for(task, 30)


def _result(request_id: str, tenant: str = "shop-1", status: str = "completed") -> bytes:
    now = datetime.now(UTC)
    result = VideoResult(
        request_id=request_id,
        tenant_id=tenant,
        status=status,  # type: ignore[arg-type]
        timings=Timings(received_at=now, completed_at=now),
        worker_id="test-worker",
        model="tiny",
    )
    return result.model_dump_json().encode()


async def _publish_result(kafka: KafkaClient, request_id: str, value: bytes) -> None:
    await kafka.producer.send_and_wait(
        kafka.settings.results_topic,
        key=request_id.encode(),
        value=value,
        partition=0,  # one partition: the order of arrival is the order of publishing
        headers=[("traceparent", TRACEPARENT)],
    )


async def _committed(settings: Settings, group: str) -> int | None:
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(settings.results_topic, 0))
        return offset
    finally:
        await consumer.stop()


async def test_notifier_delivers_each_result_once_signed_and_traced(
    notifier: RunningNotifier, kafka: KafkaClient, receiver: Receiver, settings: Settings
) -> None:
    value = _result("req-a")
    await _publish_result(kafka, "req-a", value)
    await _publish_result(kafka, "req-a", value)  # redelivered by an at-least-once producer
    await _publish_result(kafka, "req-quiet", _result("req-quiet", tenant="shop-without-webhook"))
    await _publish_result(kafka, "req-b", _result("req-b"))
    await receiver.until(lambda seen: "req-b" in [_rid(body) for _, _, body in seen])

    delivered = [_rid(body) for _, _, body in receiver.received]
    assert delivered == ["req-a", "req-b"]
    tenant, headers, body = receiver.received[0]
    assert tenant == "shop-1" and body == value
    verify(headers[SIGNATURE_HEADER], body, [NOTIFIER_SECRET], now=time.time(), tolerance_s=300)
    assert headers[DELIVERY_HEADER] == delivery_key("shop-1", "req-a", "completed")
    assert _trace_id(headers["traceparent"]) == _trace_id(TRACEPARENT)  # the result's trace continues

    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{notifier.port}/healthz") as health:
        assert health.status == 200 and (await health.json())["consumer_group"] is True
    outcomes = {
        outcome: await metric(notifier.port, f'vidgen_notifier_results_total{{outcome="{outcome}"}}')
        for outcome in ("delivered", "duplicate", "no_webhook")
    }
    assert outcomes == {"delivered": 2, "duplicate": 1, "no_webhook": 1}  # the duplicate: req-a redelivered
    notifier.stop.set()
    assert await asyncio.wait_for(notifier.task, 30) == 0
    assert await _committed(settings, notifier.settings.group) == 4  # all four answered and committed


async def test_notifier_dead_letters_after_the_last_failed_attempt(
    notifier: RunningNotifier, kafka: KafkaClient, receiver: Receiver, spans: Any
) -> None:
    receiver.statuses["shop-down"] = 500
    value = _result("req-down", tenant="shop-down", status="failed")
    await _publish_result(kafka, "req-down", value)

    [dead] = await kafka.read(notifier.settings.dlq_topic, 1, timeout_s=60)
    headers = dict(dead.headers)
    assert dead.key == b"req-down" and dead.value == value
    assert headers["vidgen-error-code"] == b"delivery_failed"
    assert headers["vidgen-delivery-attempts"] == b"3"
    assert headers["vidgen-original-topic"] == kafka.settings.results_topic.encode()
    assert headers["vidgen-original-offset"] == b"0"
    assert headers["traceparent"] == TRACEPARENT
    assert [tenant for tenant, _, _ in receiver.received] == ["shop-down"] * 3
    _, exporter = spans
    posts = _by_name(exporter, "POST")
    assert [span.kind for span in posts] == [SpanKind.CLIENT] * 3
    assert {f"{span.context.trace_id:032x}" for span in posts} == {_trace_id(TRACEPARENT)}


def _rid(body: bytes) -> str:
    return str(json.loads(body)["request_id"])


# ------------------------------------------------------------------------------------------ publish_request


def _run_cli(argv: list[str], settings: Settings, provider: TracerProvider | None = None) -> Any:
    return asyncio.to_thread(publish_request.main, argv, settings=settings, tracer_provider=provider)


@pytest.fixture
def shoe_png(tmp_path: Path) -> Path:
    image = tmp_path / "Shoe.png"
    image.write_bytes(product_image(256, 256))
    return image


async def test_publish_request_uploads_the_image_and_publishes_a_valid_traced_request(
    kafka: KafkaClient, store: ObjectStore, spans: Any, shoe_png: Path, capsys: Any
) -> None:
    provider, exporter = spans
    settings = kafka.settings
    image = shoe_png
    argv = ["--prompt", "a red sneaker", "--image", str(image), "--tenant", "shop-7", "--request-id", "cli-up-1"]
    argv += ["--width", "256", "--height", "256", "--frames", "5", "--steps", "2", "--metadata", "sku=42"]
    assert await _run_cli(argv, settings, provider) == 0
    assert capsys.readouterr().out.strip() == "cli-up-1"

    key = upload_key(image.read_bytes(), image.name, prefix=settings.s3_key_prefix, tenant_id="shop-7")
    stored = await store.head(key)
    assert stored is not None and stored.size == image.stat().st_size
    [record] = await kafka.read(settings.requests_topic, 1)
    request = VideoRequest.model_validate_json(record.value)
    assert request.image_url == f"s3://{settings.s3_bucket}/{key}"
    assert (request.tenant_id, request.num_frames, request.metadata) == ("shop-7", 5, {"sku": "42"})
    [span] = _by_name(exporter, f"send {settings.requests_topic}")
    assert span.kind == SpanKind.PRODUCER
    assert _trace_id(dict(record.headers)["traceparent"]) == f"{span.context.trace_id:032x}"


async def test_publish_request_refuses_bad_arguments_before_any_io(
    settings: Settings, tmp_path: Path, capsys: Any
) -> None:
    assert await _run_cli(["--prompt", "x", "--width", "500"], settings) == command_line.EXIT_USAGE
    assert "multiple of 16" in capsys.readouterr().err
    assert await _run_cli(["--prompt", "x", "--image", str(tmp_path / "missing.png")], settings) == 64
    assert await _run_cli(["--image-url", "s3://b/k"], settings) == 64  # --prompt is required


async def test_publish_request_times_out_with_exit_2(settings: Settings, kafka: KafkaClient, capsys: Any) -> None:
    assert await _run_cli(["--prompt", "x", "--wait", "--timeout", "1"], settings) == command_line.EXIT_TIMEOUT
    assert "no result" in capsys.readouterr().err


async def test_publish_request_says_when_kafka_is_unusable(settings: Settings, capsys: Any) -> None:
    no_topic = settings.model_copy(update={"create_topics": False, "results_topic": "never-created"})
    assert await _run_cli(["--prompt", "x", "--wait"], no_topic) == 69
    assert "never-created does not exist" in capsys.readouterr().err
    no_broker = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    assert await _run_cli(["--prompt", "x"], no_broker) == 69
    assert "cannot publish" in capsys.readouterr().err


@pytest.mark.timeout(120)
async def test_publish_request_waits_for_the_result_of_a_real_worker(
    settings: Settings, kafka: KafkaClient, store: ObjectStore, start_worker: Any, capsys: Any
) -> None:
    await start_worker(settings)
    small = ["--width", "256", "--height", "256", "--frames", "5", "--steps", "2", "--timeout", "120", "--wait"]

    rejected = await _run_cli(["--prompt", "x", "--image-url", "s3://elsewhere/x.png", *small], settings)
    assert rejected == command_line.EXIT_FAILED
    capsys.readouterr()

    assert await _run_cli(["--prompt", "a red sneaker", "--request-id", "cli-wait-1", *small], settings) == 0
    out = capsys.readouterr().out
    request_id, _, result_json = out.partition("\n")
    assert request_id == "cli-wait-1"
    result = VideoResult.model_validate_json(result_json)
    assert (result.request_id, result.status) == ("cli-wait-1", "completed")
    assert result.video is not None and result.video.num_frames == 5
