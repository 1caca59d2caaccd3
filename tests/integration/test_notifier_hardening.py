"""The notifier's hardening end to end: a secret per tenant, SSRF-safe webhook calls, bounded answers, concurrent
deliveries with per-tenant bounds and breakers, and commits that stay ordered.

The real notifier (`serve`) runs against the real broker and real HTTPS receivers on loopback (trustme
certificates); only 127.0.0.1 is ever connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider

from consumer.errors import SignatureError
from consumer.images.url_vetting import IPNetwork, Resolve
from consumer.kafka.clients import client_options, ensure_topics
from consumer.settings import Settings
from producer_examples.dedupe import delivery_key
from producer_examples.delivery import DELIVERY_HEADER
from producer_examples.notifier import serve
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.signing import SIGNATURE_HEADER, sign, verify
from schemas.events import Timings, VideoResult
from tests.support import KafkaClient, Tls, loopback_tls

SECRET_A = "shop-a-secret-0123456789abcdef-0123"
SECRET_B = "shop-b-secret-0123456789abcdef-new1"
SECRET_B_OLD = "shop-b-secret-0123456789abcdef-old0"
SECRET_OTHER = "any-other-tenant-secret-0123456789ab"
LOOPBACK: tuple[IPNetwork, ...] = (ipaddress.ip_network("127.0.0.1/32"),)
NAMES = ("localhost", "127.0.0.1", "hooks.example.test", "internal.example.test", "rebind.example.test")
GIB = 1 << 30

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ HTTPS receivers


@pytest.fixture(scope="module")
def tls() -> Tls:
    return loopback_tls(*NAMES)


@dataclass
class Receiver:
    port: int = 0
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # what /hang/ waits for
    hanging: int = 0
    most_hanging: int = 0
    huge_sent: int | None = None  # bytes /huge wrote before the client went away; None while it runs

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    async def until(self, predicate: Callable[[Receiver], bool], timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    async def note(self, tenant: str, request: web.Request) -> None:
        body = await request.read()
        async with self.changed:
            self.received.append((tenant, dict(request.headers), body))
            self.changed.notify_all()

    def tenants(self) -> list[str]:
        return [tenant for tenant, _, _ in self.received]

    def request_ids(self, tenant: str) -> list[str]:
        return [json.loads(body)["request_id"] for seen, _, body in self.received if seen == tenant]

    async def bump(self, change: int) -> None:
        async with self.changed:
            self.hanging += change
            self.most_hanging = max(self.most_hanging, self.hanging)
            self.changed.notify_all()


def _receiver_app(state: Receiver) -> web.Application:
    async def hook(request: web.Request) -> web.Response:
        await state.note(request.match_info["tenant"], request)
        return web.Response(status=200)

    async def hang(request: web.Request) -> web.Response:
        await state.note(request.match_info["tenant"], request)
        await state.bump(+1)
        try:
            await state.release.wait()
        finally:
            await state.bump(-1)
        return web.Response(status=200)

    async def huge(request: web.Request) -> web.StreamResponse:
        """200 with a 1 GiB body generated on the fly: every chunk is the same 1 MiB object."""
        await state.note("huge", request)
        response = web.StreamResponse(status=200)
        response.content_length = GIB
        await response.prepare(request)
        chunk, sent = b"x" * (1 << 20), 0
        try:
            while sent < GIB:
                await response.write(chunk)
                sent += len(chunk)
        finally:
            async with state.changed:
                state.huge_sent = sent
                state.changed.notify_all()
        return response

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/hooks/redirected")

    app = web.Application()
    app.router.add_post("/hooks/{tenant}", hook)
    app.router.add_post("/hang/{tenant}", hang)
    app.router.add_post("/huge", huge)
    app.router.add_post("/redirect", redirect)
    return app


@pytest.fixture
async def receiver(tls: Tls) -> AsyncIterator[Receiver]:
    state = Receiver()
    runner = web.AppRunner(_receiver_app(state), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server).start()
    state.port = runner.addresses[0][1]
    yield state
    state.release.set()
    await runner.cleanup()


# ------------------------------------------------------------------------------------ the notifier in-process


@dataclass
class Running:
    settings: NotifierSettings
    stop: asyncio.Event
    task: asyncio.Task[int]
    port: int

    async def shutdown(self) -> int:
        self.stop.set()
        return await asyncio.wait_for(self.task, 30)


StartNotifier = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_notifier(settings: Settings, kafka: KafkaClient, tls: Tls) -> AsyncIterator[StartNotifier]:
    started: list[Running] = []
    provider = TracerProvider()

    async def start(
        webhooks: dict[str, Any],
        *,
        trusted_networks: tuple[IPNetwork, ...] = LOOPBACK,
        resolver: Resolve | None = None,
        **overrides: Any,
    ) -> Running:
        run = uuid.uuid4().hex[:8]
        fields: dict[str, Any] = {
            "group": f"notifier-{run}",
            "dlq_topic": f"notifier-dlq-{run}",
            "max_attempts": 2,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            "timeout_s": 5,
            "host": "127.0.0.1",
            "port": 0,
            "shutdown_grace_s": 5,
        }
        notifier = NotifierSettings(webhooks=webhooks, **(fields | overrides))
        await ensure_topics(settings, [notifier.dlq_topic])  # KafkaClient.read() needs it in its metadata
        stop = asyncio.Event()
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            serve(
                settings,
                notifier,
                stop,
                tracer=provider.get_tracer("test"),
                on_http_port=port.set_result,
                trusted_networks=trusted_networks,
                ssl_context=tls.client,
                resolver=resolver,
            )
        )
        await asyncio.wait([port, task], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        started.append(Running(notifier, stop, task, port.result()))
        return started[-1]

    yield start
    for running in started:
        if not running.task.done():
            await running.shutdown()
    provider.shutdown()


def _hook(url: str, secret: str = SECRET_OTHER, previous: str | None = None) -> dict[str, Any]:
    return {"url": url, "secret": secret} | ({"previous_secret": previous} if previous else {})


def _result(request_id: str, tenant: str | None) -> bytes:
    now = datetime.now(UTC)
    result = VideoResult(
        request_id=request_id,
        tenant_id=tenant,
        status="completed",
        timings=Timings(received_at=now, completed_at=now),
        worker_id="test-worker",
        model="tiny",
    )
    return result.model_dump_json().encode()


async def _publish(kafka: KafkaClient, tenant: str | None, *request_ids: str) -> None:
    for request_id in request_ids:
        await kafka.producer.send_and_wait(
            kafka.settings.results_topic,
            key=request_id.encode(),
            value=_result(request_id, tenant),
            partition=0,  # one partition: offsets follow the order of publishing
        )


async def _committed(settings: Settings, group: str) -> int | None:
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group)
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(settings.results_topic, 0))
        return offset
    finally:
        await consumer.stop()


async def _until_committed(settings: Settings, group: str, offset: int, timeout_s: float = 30) -> None:
    async with asyncio.timeout(timeout_s):
        # Polling is the only way to watch a group's commits from outside.
        while await _committed(settings, group) != offset:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def _dead_letters(records: list[Any]) -> dict[str, tuple[str, str]]:
    """request id -> (error code, message) of DLQ records."""
    found = {}
    for record in records:
        headers = dict(record.headers)
        found[json.loads(record.value)["request_id"]] = (
            headers["vidgen-error-code"].decode(),
            headers["vidgen-error-message"].decode(),
        )
    return found


# ---------------------------------------------------------------------------------------------- findings


async def test_a_result_claiming_another_tenants_request_id_does_not_suppress_it(
    start_notifier: StartNotifier, kafka: KafkaClient, receiver: Receiver
) -> None:
    await start_notifier(
        {
            "shop-a": _hook(receiver.url("/hooks/shop-a"), SECRET_A),
            "attacker": _hook(receiver.url("/hooks/attacker")),
        }
    )
    await _publish(kafka, "attacker-without-webhook", "shop-a-order-1")  # logged only
    await _publish(kafka, "attacker", "shop-a-order-1")  # delivered to the attacker's own endpoint
    await _publish(kafka, "shop-a", "shop-a-order-1")

    await receiver.until(lambda r: "shop-a" in r.tenants())
    assert receiver.tenants() == ["attacker", "shop-a"]
    [(_, attacker_headers, _), (_, shop_headers, body)] = receiver.received
    assert json.loads(body)["tenant_id"] == "shop-a"
    assert shop_headers[DELIVERY_HEADER] == delivery_key("shop-a", "shop-a-order-1", "completed")
    assert attacker_headers[DELIVERY_HEADER] != shop_headers[DELIVERY_HEADER]


async def test_each_tenant_gets_deliveries_signed_with_its_own_secret(
    start_notifier: StartNotifier, kafka: KafkaClient, receiver: Receiver
) -> None:
    await start_notifier(
        {
            "shop-a": _hook(receiver.url("/hooks/shop-a"), SECRET_A),
            "shop-b": _hook(receiver.url("/hooks/shop-b"), SECRET_B, previous=SECRET_B_OLD),
        }
    )
    await _publish(kafka, "shop-a", "a-1")
    await _publish(kafka, "shop-b", "b-1")
    await receiver.until(lambda r: sorted(r.tenants()) == ["shop-a", "shop-b"])

    signed = {tenant: (headers[SIGNATURE_HEADER], body) for tenant, headers, body in receiver.received}
    now = time.time()
    header, body = signed["shop-a"]
    assert verify(header, body, [SECRET_A], now=now, tolerance_s=300)
    header, body = signed["shop-b"]
    assert header.count("v1=") == 2  # rotation: signed with the new and the previous secret
    for secrets in ([SECRET_B], [SECRET_B_OLD]):
        assert verify(header, body, secrets, now=now, tolerance_s=300)

    # shop-a knows its own secret and nothing else: what it signs, shop-b's receiver refuses.
    forged = _result("b-forged", "shop-b")
    with pytest.raises(SignatureError) as caught:
        verify(sign(forged, SECRET_A, timestamp=int(now)), forged, [SECRET_B, SECRET_B_OLD], now=now, tolerance_s=300)
    assert caught.value.reason == "mismatch"


async def test_internal_webhook_addresses_are_refused_at_delivery_time(
    start_notifier: StartNotifier, kafka: KafkaClient, receiver: Receiver
) -> None:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host.endswith(".example.test"):  # names only this resolver knows, all on loopback
            return ["127.0.0.1"]
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    refused = {
        "loopback": (receiver.url("/hooks/loopback"), "127.0.0.1, a loopback address"),
        "localhost": (receiver.url("/hooks/localhost", "localhost"), "a loopback address"),
        "metadata": ("https://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        "private": ("https://10.0.0.1/hook", "10.0.0.1, a private address"),
        "mapped": (f"https://[::ffff:127.0.0.1]:{receiver.port}/hooks/mapped", "(IPv4 127.0.0.1), a loopback"),
        "decimal": (f"https://2130706433:{receiver.port}/hooks/decimal", "127.0.0.1, a loopback address"),
        "named": (receiver.url("/hooks/named", "hooks.example.test"), "127.0.0.1, a loopback address"),
    }
    webhooks = {tenant: _hook(url) for tenant, (url, _) in refused.items()}
    webhooks["allowed"] = _hook(receiver.url("/hooks/allowed", "internal.example.test"))
    webhooks["moved"] = _hook(receiver.url("/redirect", "internal.example.test"))
    running = await start_notifier(
        webhooks, trusted_networks=(), resolver=resolve, allow_hosts=("internal.example.test",)
    )
    for tenant in webhooks:
        await _publish(kafka, tenant, f"req-{tenant}")

    dead = _dead_letters(await kafka.read(running.settings.dlq_topic, len(refused) + 1, timeout_s=30))
    await receiver.until(lambda r: "allowed" in r.tenants())  # named in allow_hosts: delivered
    assert sorted(dead) == sorted(f"req-{tenant}" for tenant in [*refused, "moved"])
    assert dead["req-moved"] == ("delivery_rejected", "HTTP 307: the receiver refused the delivery")  # not followed
    for tenant, (_, reason) in refused.items():
        code, message = dead[f"req-{tenant}"]
        assert code == "webhook_url_forbidden"
        assert message.startswith("webhook url ") and reason in message, message
    assert receiver.tenants() == ["allowed"]  # nothing else ever reached a socket


async def test_dns_is_vetted_again_for_every_delivery(
    start_notifier: StartNotifier, kafka: KafkaClient, receiver: Receiver
) -> None:
    answers = ["127.0.0.1", "169.254.169.254"]

    async def rebinding(host: str, _port: int) -> Sequence[str]:
        return [answers[0] if len(receiver.received) == 0 else answers[1]]

    running = await start_notifier(
        {"shop-a": _hook(receiver.url("/hooks/shop-a", "rebind.example.test"))}, resolver=rebinding
    )
    await _publish(kafka, "shop-a", "first")
    await receiver.until(lambda r: len(r.received) == 1)
    await _publish(kafka, "shop-a", "second")  # the name now points at the metadata service

    dead = _dead_letters(await kafka.read(running.settings.dlq_topic, 1))
    assert dead["second"][0] == "webhook_url_forbidden" and "169.254.169.254" in dead["second"][1]
    assert receiver.request_ids("shop-a") == ["first"]


async def test_a_huge_answer_is_neither_read_nor_buffered(
    start_notifier: StartNotifier, settings: Settings, kafka: KafkaClient, receiver: Receiver
) -> None:
    running = await start_notifier({"shop-a": _hook(receiver.url("/huge"))}, timeout_s=60)
    process = psutil.Process()
    baseline = peak = process.memory_info().rss

    await _publish(kafka, "shop-a", "a-1")
    sampling = asyncio.create_task(receiver.until(lambda r: r.huge_sent is not None))
    while not sampling.done():  # sample RSS until the endpoint notices nobody reads its answer
        peak = max(peak, process.memory_info().rss)
        await asyncio.wait([sampling], timeout=0.01)
    await sampling
    await _until_committed(settings, running.settings.group, 1)  # a 200 is a delivery
    peak = max(peak, process.memory_info().rss)

    grown_mib = (peak - baseline) / (1 << 20)
    log.info("huge answer: the endpoint wrote %s bytes; peak RSS +%.1f MiB", receiver.huge_sent, grown_mib)
    assert receiver.huge_sent is not None and receiver.huge_sent < 64 << 20
    assert grown_mib < 16


async def test_a_hanging_endpoint_delays_only_its_own_tenant(
    start_notifier: StartNotifier, kafka: KafkaClient, receiver: Receiver
) -> None:
    running = await start_notifier(
        {"shop-x": _hook(receiver.url("/hang/shop-x")), "shop-y": _hook(receiver.url("/hooks/shop-y"))},
        timeout_s=3,
        max_attempts=3,
        tenant_concurrency=2,
        breaker_failures=2,
        breaker_open_s=60,
    )
    await _publish(kafka, "shop-x", "x-1", "x-2", "x-3", "x-4")
    await receiver.until(lambda r: r.hanging == 2)  # x-1 and x-2 hang; x-3 and x-4 wait for shop-x's slots
    published = time.monotonic()
    await _publish(kafka, "shop-y", "y-1")
    await receiver.until(lambda r: "shop-y" in r.tenants(), timeout_s=10)
    waited = time.monotonic() - published
    log.info("shop-y delivered %.2f s after publishing while shop-x hangs", waited)
    assert waited < 2.0
    assert receiver.hanging == 2 and receiver.most_hanging == 2  # shop-x's bound

    # Both hanging attempts time out: shop-x's breaker opens, and its results go to the DLQ at once.
    dead = _dead_letters(await kafka.read(running.settings.dlq_topic, 4, timeout_s=30))
    assert {code for code, _ in dead.values()} == {"endpoint_unavailable"}
    await _publish(kafka, "shop-x", "x-5")
    started = time.monotonic()
    dead = _dead_letters(await kafka.read(running.settings.dlq_topic, 5, timeout_s=30))
    assert dead["x-5"][0] == "endpoint_unavailable" and time.monotonic() - started < 3
    assert sorted(receiver.request_ids("shop-x")) == ["x-1", "x-2"]  # one attempt each before the breaker opened


async def test_commits_stay_ordered_while_later_results_finish_first(
    start_notifier: StartNotifier, settings: Settings, kafka: KafkaClient, receiver: Receiver
) -> None:
    webhooks = {"shop-s": _hook(receiver.url("/hang/shop-s")), "shop-f": _hook(receiver.url("/hooks/shop-f"))}
    first = await start_notifier(webhooks, timeout_s=60, shutdown_grace_s=0.2)
    await _publish(kafka, "shop-s", "s-1")  # offset 0: hangs
    await _publish(kafka, "shop-f", "f-1", "f-2")  # offsets 1, 2: delivered at once
    await receiver.until(lambda r: r.request_ids("shop-f") == ["f-1", "f-2"] and r.hanging == 1)

    assert await first.shutdown() == 0  # s-1 is abandoned after the grace
    assert await _committed(settings, first.settings.group) is None  # not past offset 0, though 1 and 2 finished

    receiver.release.set()
    again = await start_notifier(webhooks, group=first.settings.group, dlq_topic=first.settings.dlq_topic)
    await _until_committed(settings, again.settings.group, 3)
    assert receiver.request_ids("shop-s") == ["s-1", "s-1"]  # re-read and delivered by the next run
