"""Result notifications: consumer group `video-notifier` on video.results -> a signed POST to each tenant's webhook.

At least once, in partition order: an offset is committed only after its result was delivered, skipped (a
duplicate, or a tenant without a webhook) or dead-lettered to `video.results.notifier-dlq`. Duplicates are
recognised by `<request_id>:<status>` in a bounded in-memory LRU (see `dedupe.py` for what production needs);
receivers get the same key in `X-Vidgen-Delivery` to dedupe on their side too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from pydantic import AliasChoices, Field, HttpUrl, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from consumer.kafka import client_options, ensure_topics, make_producer
from consumer.logs import configure_logging
from consumer.publisher import dead_letter_headers
from consumer.settings import Settings
from consumer.tracing import extract_context
from producer_examples.dedupe import RecentKeys
from producer_examples.delivery import WebhookDelivery
from producer_examples.telemetry import make_tracer_provider
from schemas.events import VideoResult

__all__ = ["Notifier", "NotifierSettings", "main", "serve"]

log = logging.getLogger(__name__)

_POLL_MS = 100


class NotifierSettings(BaseSettings):
    """`VIDGEN_NOTIFIER_*`. Kafka connection and the results topic come from the worker's `VIDGEN_*` Settings."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_NOTIFIER_", extra="ignore", frozen=True, populate_by_name=True)

    group: str = "video-notifier"
    dlq_topic: str = "video.results.notifier-dlq"
    webhooks: dict[str, HttpUrl] = Field(default_factory=dict, description="JSON map tenant_id -> webhook URL.")
    secret: SecretStr | None = Field(None, description="HMAC secret signing every POST; required with webhooks.")
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    timeout_s: float = Field(10.0, gt=0, description="Per attempt.")
    dedupe_capacity: int = Field(100_000, ge=1)
    host: str = "0.0.0.0"  # noqa: S104 - probes reach the notifier from outside the pod
    port: int = Field(8082, ge=0, le=65_535)
    shutdown_grace_s: float = Field(30.0, ge=0, description="Time an in-flight delivery gets on SIGTERM.")
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("VIDGEN_NOTIFIER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector, e.g. http://jaeger:4318; unset: spans are recorded, not exported.",
    )

    @model_validator(mode="after")
    def _secret_with_webhooks(self) -> NotifierSettings:
        if self.webhooks and (self.secret is None or len(self.secret.get_secret_value()) < 16):
            raise ValueError("webhooks need a secret of at least 16 characters")
        return self


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._notifier.joined = False

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._notifier.joined = True
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Notifier:
    def __init__(
        self,
        *,
        settings: Settings,
        notifier: NotifierSettings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        delivery: WebhookDelivery,
        tracer: Tracer,
    ) -> None:
        self._settings = settings
        self._notifier = notifier
        self._consumer = consumer
        self._producer = producer
        self._delivery = delivery
        self._tracer = tracer
        self._delivered = RecentKeys(notifier.dedupe_capacity)
        self.joined = False

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; an in-flight delivery gets `shutdown_grace_s`, then stays uncommitted."""
        while not stop.is_set():
            batch = await self._consumer.getmany(timeout_ms=_POLL_MS)
            for tp, records in batch.items():
                for record in records:
                    if tp not in self._consumer.assignment():
                        break  # revoked meanwhile: its new owner reads it from the last commit
                    if stop.is_set() or not await self._while_polling(self._handle(record), stop):
                        return  # the rest of the batch is re-read by whoever owns the partition next
                    await self._commit(tp, record.offset + 1)

    async def _while_polling(self, job: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
        """Run `job` while calling getmany() with partitions paused, so retries longer than
        max_poll_interval_ms do not cost the group membership. False when abandoned on shutdown."""
        task = asyncio.create_task(job)
        try:
            while not task.done():
                if stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(task), self._notifier.shutdown_grace_s)
                    break
                await asyncio.wait({task}, timeout=_POLL_MS / 1000)
                self._consumer.pause(*self._consumer.assignment())  # again: a rebalance may have added some
                for tp, records in (await self._consumer.getmany(timeout_ms=0)).items():
                    self._consumer.seek(tp, records[0].offset)  # fetched before the pause took: read them later
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._consumer.resume(*self._consumer.assignment())
        if task.cancelled():
            log.warning("delivery abandoned on shutdown; its result will be re-read")
            return False
        task.result()  # a DLQ publish that never succeeded stops the notifier uncommitted
        return True

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        with self._tracer.start_as_current_span(
            f"process {record.topic}", context=extract_context(record.headers), kind=SpanKind.CONSUMER
        ) as span:
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self._notifier.group,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                }
            )
            if record.key is not None:
                span.set_attribute("messaging.kafka.message.key", record.key.decode("utf-8", "replace"))
            try:
                result = VideoResult.model_validate_json(record.value or b"")
            except ValidationError as exc:
                span.set_status(Status(StatusCode.ERROR, "invalid_result"))
                await self._dead_letter(record, "invalid_result", f"not a v1 VideoResult: {exc.error_count()} error(s)")
                return
            delivery_id = f"{result.request_id}:{result.status}"
            extra = {"request_id": result.request_id, "tenant_id": result.tenant_id, "status": result.status}
            if delivery_id in self._delivered:
                span.set_attribute("vidgen.duplicate", True)
                log.info("result %s already delivered; skipped", delivery_id, extra=extra)
                return
            url = self._notifier.webhooks.get(result.tenant_id or "")
            if url is None:
                log.info("no webhook for tenant %s; result %s logged only", result.tenant_id, delivery_id, extra=extra)
                self._delivered.add(delivery_id)
                return
            outcome = await self._delivery.deliver(str(url), record.value, delivery_id=delivery_id)
            if outcome.delivered:
                self._delivered.add(delivery_id)
                log.info("result %s delivered (%d attempt(s))", delivery_id, outcome.attempts, extra=extra)
                return
            span.set_status(Status(StatusCode.ERROR, outcome.code))
            span.set_attribute("error.type", outcome.code)
            await self._dead_letter(record, outcome.code, outcome.message, attempts=outcome.attempts)

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], code: str, message: str, *, attempts: int = 0
    ) -> None:
        headers = [
            *dead_letter_headers(record, code=code, message=message, worker_id=self._settings.worker_id),
            ("vidgen-delivery-attempts", str(attempts).encode()),
        ]
        topic = self._notifier.dlq_topic
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(KafkaError),
            stop=stop_after_delay(120),
            wait=wait_exponential(multiplier=0.2, max=10),
            reraise=True,
        ):
            with attempt:
                await self._producer.send_and_wait(topic, key=record.key, value=record.value, headers=headers)
        log.warning("result %s[%d]@%d dead-lettered: %s", record.topic, record.partition, record.offset, code)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self._consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the partition's new owner re-reads from the last commit (a duplicate POST).
            log.warning("commit of %s[%d]@%d failed: %r", tp.topic, tp.partition, offset, exc)


async def serve(
    settings: Settings,
    notifier: NotifierSettings,
    stop: asyncio.Event,
    *,
    tracer: Tracer,
    on_http_port: Callable[[int], None] | None = None,
) -> int:
    """Run until `stop` is set; returns the exit code."""
    running: Notifier | None = None

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "consumer_group": bool(running and running.joined)})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, notifier.host, notifier.port).start()
        if on_http_port is not None:
            on_http_port(int(runner.addresses[0][1]))
        if settings.create_topics:
            await ensure_topics(settings, [settings.results_topic, notifier.dlq_topic])
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=notifier.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        producer = make_producer(settings)
        secret = notifier.secret.get_secret_value() if notifier.secret else ""
        async with aiohttp.ClientSession() as http:
            delivery = WebhookDelivery(
                http,
                secret=secret,
                tracer=tracer,
                max_attempts=notifier.max_attempts,
                backoff_initial_s=notifier.backoff_initial_s,
                backoff_max_s=notifier.backoff_max_s,
                timeout_s=notifier.timeout_s,
            )
            running = Notifier(
                settings=settings,
                notifier=notifier,
                consumer=consumer,
                producer=producer,
                delivery=delivery,
                tracer=tracer,
            )
            consumer.subscribe([settings.results_topic], listener=running.listener())
            await producer.start()
            try:
                await consumer.start()
                try:
                    await running.run(stop)
                finally:
                    await consumer.stop()
            finally:
                await producer.stop()
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m producer_examples.notifier`: configured by VIDGEN_* and VIDGEN_NOTIFIER_* variables."""
    del argv
    try:
        settings, notifier = Settings(), NotifierSettings()
    except ValidationError as exc:
        print(f"notifier: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    provider = make_tracer_provider("vidgen-notifier", notifier.otlp_endpoint)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await serve(settings, notifier, stop, tracer=provider.get_tracer(__name__))

    try:
        return asyncio.run(runner())
    except KafkaError as exc:
        log.critical("notifier stopped: %r", exc)
        return 1
    finally:
        provider.shutdown()


if __name__ == "__main__":
    sys.exit(main())
