"""The documented Kafka ACLs (`consumer.kafka.topic_access`) against what each component really asks a broker: every
component runs against a broker behind a proxy that decodes each request (produce, fetch, offsets, groups, topic
creation) by client id, and never touches a topic or group beyond its row of the table; what it must do to do its
job (a worker answering and dead-lettering, the API publishing and cancelling, the hook publishing and watching the
GPU pool's lag, the notifier dead-lettering a refused delivery, the operator commands) shows there too
(issue 22, item 9)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet
from opentelemetry.trace import NoOpTracer
from pydantic import SecretStr

from bench.workers import WorkerProcess
from consumer.core.priority_lanes import topic_for
from consumer.dev.embedded import free_port, isolated_settings, kafka_broker
from consumer.kafka.topic_access import ComponentAccess, topic_access
from consumer.settings import Settings
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.product_hook import ROUTE, HookSettings, make_app
from producer_examples.signing import SIGNATURE_HEADER, sign
from schemas.job_api import Fallback
from tests.integration.api_helpers import api_settings, bearer, new_key, running_api
from tests.integration.kafka_recording import ClientActivity, RecordingProxy
from tests.support import REPO, KafkaClient, product_payload, request_body, until

pytestmark = pytest.mark.integration

NOTIFIER = NotifierSettings.model_fields


@pytest.fixture(scope="module")
async def proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RecordingProxy]:
    broker_port = free_port()
    recorder = RecordingProxy(broker_port)
    log = tmp_path_factory.mktemp("tansu-acl") / "tansu.log"
    with kafka_broker(broker_port, advertised_port=recorder.port, log_path=log):
        await recorder.start()
        yield recorder
        await recorder.close()


@pytest.fixture
def settings(proxy: RecordingProxy, s3_endpoint: str) -> Settings:
    run = "acl" + uuid.uuid4().hex[:8]
    return isolated_settings(
        f"127.0.0.1:{proxy.port}",
        s3_endpoint,
        run,
        topic_partitions=2,
        http_host="127.0.0.1",
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        shutdown_grace_s=5,
        worker_id=f"{run}-test",
    )


@pytest.fixture
def rows(settings: Settings) -> dict[str, ComponentAccess]:
    access = topic_access(
        settings, notifier_group=NOTIFIER["group"].default, notifier_dlq_topic=NOTIFIER["dlq_topic"].default
    )
    return {row.name: row for row in access}


@pytest.fixture
def processes() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        process.stop(grace_s=5)


def _env(settings: Settings, name: str, **update: Any) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIDGEN_")}
    own = settings.model_copy(update={"worker_id": name, "log_level": "WARNING", "http_port": free_port(), **update})
    return env | own.as_environment() | {"PYTHONUNBUFFERED": "1"}


def _activity(proxy: RecordingProxy, name: str) -> ClientActivity:
    assert proxy.undecoded == set(), "requests the recorder could not decode: it may miss topics"
    return proxy.activity[f"vidgen-{name}"]


def assert_within(seen: ClientActivity, row: ComponentAccess) -> None:
    """Nothing beyond the component's row: each operation on a topic or group the table grants it."""
    assert seen.produced <= set(row.writes), f"{row.name} wrote {sorted(seen.produced - set(row.writes))}"
    assert seen.fetched <= set(row.reads), f"{row.name} read {sorted(seen.fetched - set(row.reads))}"
    described = set(row.reads) | set(row.watches)
    assert seen.offsets_of <= described, f"{row.name} described {sorted(seen.offsets_of - described)}"
    assert seen.created <= set(row.creates), f"{row.name} created {sorted(seen.created - set(row.creates))}"
    assert seen.joined <= set(row.groups), f"{row.name} joined {sorted(seen.joined - set(row.groups))}"
    groups = set(row.groups) | set(row.watched_groups)
    assert seen.commits_read <= groups, f"{row.name} read the commits of {sorted(seen.commits_read - groups)}"


async def test_workers_of_both_pools_stay_within_their_rows(
    settings: Settings, proxy: RecordingProxy, rows: dict[str, ComponentAccess], processes: list[WorkerProcess]
) -> None:
    pool = settings.template_pool()
    gpu = WorkerProcess(_env(settings, "acl-gpu", model="standin", standin_render_s=0.1), Path(os.devnull))
    template = WorkerProcess(_env(pool, "acl-template"), Path(os.devnull))
    processes.extend([gpu, template])
    for worker in (gpu, template):
        worker.start()
    await asyncio.gather(gpu.wait_ready(), template.wait_ready())
    client, degraded = KafkaClient(settings), KafkaClient(pool)
    await client.start()
    await degraded.start()
    try:
        await client.send(request_body("acl-gpu-1"))
        await client.send(b"not json", key="acl-garbage")  # dead-lettered
        await degraded.send(request_body("acl-template-1"))
        results = await client.results(2, timeout_s=120)
        await client.read(settings.dlq_topic, 1)
    finally:
        await client.stop()
        await degraded.stop()
    assert {results["acl-gpu-1"].model, results["acl-template-1"].model} == {"standin", "template"}

    for name, row, own in (("acl-gpu", "GPU worker pool", settings), ("acl-template", "Template worker pool", pool)):
        seen = _activity(proxy, name)
        assert_within(seen, rows[row])
        assert {own.requests_topic, own.bulk_topic, own.retry_topic, own.control_topic, own.attempts_topic} <= (
            seen.fetched
        )
        assert {own.results_topic, own.attempts_topic, own.progress_topic} <= seen.produced
        assert seen.joined == {own.consumer_group}
    assert settings.dlq_topic in _activity(proxy, "acl-gpu").produced


async def test_the_job_api_stays_within_its_row(
    settings: Settings, proxy: RecordingProxy, rows: dict[str, ComponentAccess], tmp_path: Path
) -> None:
    api = api_settings(tmp_path, None, pool_down_s=1.0)  # no GPU worker: the pool is down a second after a job waits
    key = new_key(api, "shop-1")
    # Tenant webhooks on: the API follows the webhooks topic and writes an endpoint there.
    webhooks = {"webhook_secrets_key": SecretStr(Fernet.generate_key().decode()), "webhook_allow_hosts": ("localhost",)}
    async with (
        running_api(settings.model_copy(update={"worker_id": "acl-api", **webhooks}), api) as server,
        aiohttp.ClientSession(headers=bearer(key)) as http,
    ):
        video = {"prompt": "a lamp", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}

        async def submit(**extra: str) -> dict[str, Any]:
            async with http.post(f"{server.url}/v1/videos", json={**video, **extra}) as response:
                assert response.status == 202, await response.text()
                job: dict[str, Any] = await response.json()
                return job

        async def pool_down() -> bool:
            async with http.get(f"{server.url}/v1/queue") as response:
                return bool((await response.json())["pool_down"])

        waiting = await submit(fallback="none")
        await until(pool_down, timeout_s=30, every_s=0.2)
        degraded, bulk = await submit(fallback="template"), await submit(priority="bulk", fallback="none")
        assert (waiting["degraded"], degraded["degraded"], bulk["degraded"]) == (False, True, False)
        async with http.post(f"{server.url}/v1/videos/{waiting['id']}/cancel") as response:
            assert response.status == 202, await response.text()
        async with http.delete(f"{server.url}/v1/videos/{bulk['id']}") as response:  # a delete command: control too
            assert response.status == 200, await response.text()
        endpoint = {"url": "https://localhost:8443/hooks/shop", "events": ["video.completed"]}
        async with http.post(f"{server.url}/v1/webhooks", json=endpoint) as response:
            assert response.status == 201, await response.text()

    seen = _activity(proxy, "acl-api")
    assert_within(seen, rows["Job API"])
    # More than `video.requests` and `video.control`, which the README's ACL for the API used to grant.
    assert seen.produced == {
        settings.requests_topic,
        settings.template_topic,
        settings.bulk_topic,
        settings.control_topic,
        settings.webhooks_topic,
    }
    assert set(rows["Job API"].reads) <= seen.fetched  # its view follows every topic it reads
    assert seen.joined == set() and seen.commits_read == set()


@pytest.mark.parametrize("fallback", ["template", "similar"])
async def test_the_product_hook_stays_within_its_row(
    settings: Settings, proxy: RecordingProxy, rows: dict[str, ComponentAccess], fallback: Fallback
) -> None:
    secret = "hook-signing-secret-for-acl-tests"
    name = f"acl-hook-{fallback}"  # the proxy records each client id for the whole module
    hook = HookSettings(
        secret=secret,
        id_key="request-id-key-for-acl-tests-0123456789abcdef",
        pool_check_s=0.2,
        width=256,
        height=256,
        fallback=fallback,
    )
    followed = {settings.results_topic, settings.control_topic} if fallback == "similar" else set()
    app = make_app(hook, settings.model_copy(update={"worker_id": name}), tracer=NoOpTracer())
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        payload = json.dumps(product_payload("p-acl")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(payload, secret, timestamp=int(time.time())),
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(server.make_url(ROUTE), data=payload, headers=headers) as answer,
        ):
            assert answer.status == 202, await answer.text()
        await until(lambda: _watched(proxy, name, settings.consumer_group), timeout_s=30)
        await until(lambda: _fetched(proxy, name, followed), timeout_s=30)
    finally:
        await server.close()

    seen = _activity(proxy, name)
    row = rows["Product hook"]
    if fallback == "similar":  # both rows of the hook's principal
        extra = rows["Product hook, similar fallback"]
        row = replace(
            row, reads=extra.reads, writes=(*row.writes, *extra.writes), creates=(*row.creates, *extra.creates)
        )
    assert_within(seen, row)
    lane = topic_for(hook.priority, requests_topic=settings.requests_topic, bulk_topic=settings.bulk_topic)
    assert seen.produced == {lane}  # VIDGEN_HOOK_PRIORITY's lane
    assert seen.joined == set() and seen.fetched == followed  # a similar fallback's index follows without a group


async def _fetched(proxy: RecordingProxy, name: str, topics: set[str]) -> bool:
    return topics <= _activity(proxy, name).fetched


async def _watched(proxy: RecordingProxy, name: str, group: str) -> bool:
    return group in _activity(proxy, name).commits_read


async def test_the_notifier_stays_within_its_row(
    settings: Settings,
    proxy: RecordingProxy,
    rows: dict[str, ComponentAccess],
    processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    webhooks = {"shop-1": {"url": "https://127.0.0.1:9/hooks", "secret": "s" * 40}}  # loopback: refused, dead-lettered
    env = _env(settings, "acl-notifier") | {
        "VIDGEN_NOTIFIER_WEBHOOKS": json.dumps(webhooks),
        "VIDGEN_NOTIFIER_PORT": str(free_port()),
        "VIDGEN_NOTIFIER_HOST": "127.0.0.1",
    }
    notifier = _start("producer_examples.notifier", env, tmp_path / "notifier.log")
    client = KafkaClient(settings)
    await client.start()
    try:
        await until(lambda: _joined(proxy, "acl-notifier", NOTIFIER["group"].default), timeout_s=90)
        result = {"request_id": "acl-1", "tenant_id": "shop-1", "status": "failed"}
        await client.producer.send_and_wait(settings.results_topic, key=b"acl-1", value=json.dumps(result).encode())
        await client.read(NOTIFIER["dlq_topic"].default, 1, timeout_s=90)
    finally:
        await client.stop()
        notifier.terminate()
        await asyncio.to_thread(notifier.wait, 30)

    seen = _activity(proxy, "acl-notifier")
    assert_within(seen, rows["Notifier"])
    assert seen.fetched == {settings.results_topic} and seen.produced == {NOTIFIER["dlq_topic"].default}


def _start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module], env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT
        )


async def _joined(proxy: RecordingProxy, name: str, group: str) -> bool:
    return group in _activity(proxy, name).joined


def _vidgen(settings: Settings, name: str, *arguments: str) -> subprocess.CompletedProcess[bytes]:
    env = _env(settings, name)
    return subprocess.run(
        [sys.executable, "-m", "consumer", *arguments], env=env, cwd=REPO, capture_output=True, timeout=120, check=False
    )


async def test_operator_commands_stay_within_their_rows(
    settings: Settings, proxy: RecordingProxy, rows: dict[str, ComponentAccess]
) -> None:
    progress = ("--progress-topic", settings.progress_topic)
    submit = ("submit", "--tenant", "shop-1", "--prompt", "a lamp", "--width", "256", "--height", "256")
    submitted = await asyncio.to_thread(_vidgen, settings, "acl-submit", *submit, "--wait", "--timeout", "2", *progress)
    request_id = submitted.stdout.decode().split()[0]
    watched = await asyncio.to_thread(_vidgen, settings, "acl-watch", "watch", request_id, "--timeout", "1")
    cancelled = await asyncio.to_thread(_vidgen, settings, "acl-cancel", "cancel", request_id, "--tenant", "shop-1")
    assert cancelled.returncode == 0, cancelled.stderr

    for name, row in (("acl-submit", "Operator: submit and watch"), ("acl-watch", "Operator: submit and watch")):
        assert_within(_activity(proxy, name), rows[row])
    assert_within(_activity(proxy, "acl-cancel"), rows["Operator: cancel"])
    assert settings.requests_topic in _activity(proxy, "acl-submit").produced
    assert settings.results_topic in _activity(proxy, "acl-watch").fetched, watched.stderr
    assert _activity(proxy, "acl-cancel").produced == {settings.control_topic}
