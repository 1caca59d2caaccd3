"""Shared pieces of the tenant webhook tests: reading a whole topic, and an HTTPS receiver on loopback whose
certificate names `localhost`, signed by a CA written to a file (what `SSL_CERT_FILE` points a process at)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.kafka.clients import client_options
from consumer.settings import Settings

__all__ = ["Delivery", "NotifierProcess", "Receiver", "start_receiver", "topic_records"]


async def topic_records(settings: Settings, topic: str, *, timeout_s: float = 30) -> list[Any]:
    """Every record of `topic` up to where each partition ends now, in partition order."""
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for part in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(part)
        return records
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


@dataclass
class Receiver:
    """Records every POST; answers `statuses[path]` (200 when absent)."""

    url: str
    ca_file: Path
    statuses: dict[str, int] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def until(self, predicate: Callable[[list[Delivery]], bool], timeout_s: float = 90) -> list[Delivery]:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(lambda: predicate(self.received))
            return list(self.received)

    def at(self, path: str) -> list[Delivery]:
        return [delivery for delivery in self.received if delivery.path == path]


async def start_receiver(directory: Path) -> tuple[Receiver, web.AppRunner]:
    ca = trustme.CA()
    ca_file = directory / "receiver-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    holder: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        state = holder[0]
        delivery = Delivery(request.path, dict(request.headers), await request.read(), time.monotonic())
        async with state.changed:
            state.received.append(delivery)
            state.changed.notify_all()
        return web.Response(status=state.statuses.get(request.path, 200))

    app = web.Application()
    app.router.add_post("/{path:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server).start()
    holder.append(Receiver(f"https://localhost:{runner.addresses[0][1]}", ca_file))
    return holder[0], runner


@dataclass
class NotifierProcess:
    """`python -m producer_examples.notifier` on `settings`, trusting the receiver's CA (`SSL_CERT_FILE`), with an
    operator webhook per entry of `webhooks` (tenant -> {"url", "secret"})."""

    settings: Settings
    receiver: Receiver
    webhooks: dict[str, dict[str, str]]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
        env.update(self.settings.model_copy(update={"log_format": "text"}).as_environment())
        run = self.log_path.stem
        env.update(
            {
                "VIDGEN_NOTIFIER_GROUP": f"notifier-{run}",
                "VIDGEN_NOTIFIER_DLQ_TOPIC": f"notifier-dlq-{run}",
                "VIDGEN_NOTIFIER_WEBHOOKS": json.dumps(self.webhooks),
                "VIDGEN_NOTIFIER_ALLOW_HOSTS": "localhost",
                "VIDGEN_NOTIFIER_HOST": "127.0.0.1",
                "VIDGEN_NOTIFIER_PORT": str(self.port),
                "VIDGEN_NOTIFIER_BACKOFF_INITIAL_S": "0.05",
                "VIDGEN_NOTIFIER_BACKOFF_MAX_S": "0.2",
                "SSL_CERT_FILE": str(self.receiver.ca_file),  # the receiver's CA as this process's trust store
            }
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "producer_examples.notifier"],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def ready(self, *, timeout_s: float = 90) -> None:
        """Until its /healthz says it joined its consumer group."""
        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout_s):
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"the notifier exited:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200 and (await response.json())["consumer_group"]:
                            return
                await asyncio.sleep(0.2)  # another process: only its probe can say

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
