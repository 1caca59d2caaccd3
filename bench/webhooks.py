"""Tenant webhook delivery latency: from a result published to video.results (the moment a worker would publish it)
to a tenant endpoint receiving the signed `video.completed` POST. The real notifier (in this process) reads the
embedded tansu broker, follows the endpoint on the webhooks topic and POSTs over HTTPS (TLS handshake per POST, as
in production) to a receiver on loopback; every delivery is verified with `standardwebhooks` outside the timing.

Two phases: `sequential` (one result at a time: the latency of a quiet system) and `burst` (results published at
once: queueing in the notifier included). Prints JSON; latencies in milliseconds, measured from just before the
result's send (its broker acknowledgement included) to the receiver reading the POST's body.

    python -m bench.webhooks [--sequential 200] [--burst 200] [--fetch-max-wait-ms 500 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import trustme
from aiohttp import web
from cryptography.fernet import Fernet
from opentelemetry.trace import NoOpTracer
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook as StandardWebhook

from bench.infra import Infra, embedded_infra, machine_info, new_run
from bench.stats import summary
from consumer.kafka.clients import ensure_topics, make_producer
from consumer.settings import Settings
from consumer.webhooks.secret_box import SecretBox, new_secret
from producer_examples.notifier import serve
from producer_examples.notifier_settings import NotifierSettings
from schemas.events import VideoResult
from schemas.webhooks import StoredSecret, WebhookEndpointRecord

TENANT = "bench-shop"


class _Receiver:
    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.changed = asyncio.Condition()

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.perf_counter()
        async with self.changed:
            self.arrived.setdefault(json.loads(body)["data"]["id"], at)
            self.deliveries.append((dict(request.headers), body))
            self.changed.notify_all()
        return web.Response(status=204)

    async def until(self, video_ids: Sequence[str], timeout_s: float = 300) -> None:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: all(video_id in self.arrived for video_id in video_ids))


@contextlib.asynccontextmanager
async def _receiving(receiver: _Receiver) -> AsyncIterator[tuple[str, ssl.SSLContext]]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server).start()
        yield f"https://localhost:{runner.addresses[0][1]}/hook", client
    finally:
        await runner.cleanup()


async def _loopback(host: str, port: int) -> list[str]:
    del host, port
    return ["127.0.0.1"]


def result_value(video_id: str, tenant: str = TENANT) -> bytes:
    """A minimal completed result, as a worker publishes it."""
    now = datetime.now(UTC).isoformat()
    fields = {"request_id": video_id, "tenant_id": tenant, "status": "completed", "worker_id": "bench", "model": "tiny"}
    return (
        VideoResult.model_validate(fields | {"timings": {"received_at": now, "completed_at": now}})
        .model_dump_json()
        .encode()
    )


async def measure(infra: Infra, *, sequential: int, burst: int, fetch_max_wait_ms: int) -> dict[str, Any]:
    key = Fernet.generate_key().decode()
    run = new_run(infra, "webhooks").model_dump()
    settings = Settings.model_validate({**run, "webhook_secrets_key": key, "webhook_allow_hosts": ("localhost",)})
    notifier = NotifierSettings(
        group=f"{settings.consumer_group}-notifier",
        dlq_topic=f"{settings.results_topic}.notifier-dlq",
        host="127.0.0.1",
        port=0,
        progress_deliveries=False,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await ensure_topics(settings, [settings.results_topic, settings.webhooks_topic, notifier.dlq_topic])
    receiver = _Receiver()
    secret = new_secret()
    async with _receiving(receiver) as (url, client_tls):
        producer = make_producer(settings)
        await producer.start()
        stop = asyncio.Event()
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            record = WebhookEndpointRecord(
                id="wh_" + "b" * 32,
                tenant_id=TENANT,
                url=url,
                events=["video.completed"],
                created_at=datetime.now(UTC),
                secrets=[StoredSecret(ciphertext=SecretBox(SecretStr(key)).seal(secret))],
            )
            await producer.send_and_wait(
                settings.webhooks_topic, key=record.id.encode(), value=record.model_dump_json().encode()
            )
            task = asyncio.create_task(
                serve(
                    settings,
                    notifier,
                    stop,
                    tracer=NoOpTracer(),
                    on_http_port=port.set_result,
                    ssl_context=client_tls,
                    resolver=_loopback,
                )
            )
            await _joined(await port)

            async def publish(video_id: str) -> float:
                began = time.perf_counter()
                await producer.send_and_wait(
                    settings.results_topic, key=video_id.encode(), value=result_value(video_id)
                )
                return began

            await publish("warm-up")
            await receiver.until(["warm-up"])
            quiet: list[float] = []
            for index in range(sequential):
                video_id = f"seq-{index}"
                began = await publish(video_id)
                await receiver.until([video_id])
                quiet.append(receiver.arrived[video_id] - began)
            ids = [f"burst-{index}" for index in range(burst)]
            starts = await asyncio.gather(*(publish(video_id) for video_id in ids))
            await receiver.until(ids)
            bursty = [receiver.arrived[video_id] - began for video_id, began in zip(ids, starts, strict=True)]
            stop.set()
            await asyncio.wait_for(task, 60)
        finally:
            stop.set()
            await producer.stop()
    for headers, body in receiver.deliveries:
        StandardWebhook(secret).verify(body, headers)  # every delivery, outside the timing
    return {
        "benchmark": "webhook delivery latency: result published -> tenant endpoint received it",
        "broker": "tansu (embedded, memory storage)",
        "notifier": {"fetch_max_wait_ms": notifier.fetch_max_wait_ms, "tls_handshake_per_post": True},
        "deliveries_verified": len(receiver.deliveries),
        "sequential": {"results": sequential, "latency_ms": summary(quiet, scale=1000, digits=1)},
        "burst": {"results": burst, "latency_ms": summary(bursty, scale=1000, digits=1)},
    }


async def _joined(port: int, timeout_s: float = 60) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if (await response.json()).get("consumer_group"):
                        return
            await asyncio.sleep(0.1)  # the probe is the notifier's only outward sign of joining


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=[500, 20],
        nargs="+",
        help="one run per value: tansu answers a fetch only when this expires (Apache Kafka as soon as a record is "
        "there), so a short wait shows what the notifier itself adds",
    )
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            runs = [
                await measure(infra, sequential=args.sequential, burst=args.burst, fetch_max_wait_ms=wait)
                for wait in args.fetch_max_wait_ms
            ]
        return {"benchmark": runs[0]["benchmark"], "machine": machine_info(), "runs": runs}

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
