"""Result notifications: consumer group `video-notifier` on video.results -> a signed POST to each tenant's webhook.

At least once: an offset is committed only after its result was delivered, skipped (a duplicate, or a tenant
without a webhook) or dead-lettered to `video.results.notifier-dlq`, and only as part of the contiguous finished
prefix of its partition (`consumer.offsets.OffsetTracker`). Deliveries run concurrently, at most
`tenant_concurrency` per tenant and `max_concurrency` in all, so a slow tenant delays only itself; a tenant whose
endpoint keeps failing has its breaker opened, and its results go straight to the DLQ with
`endpoint_unavailable` (replay them by producing the DLQ records back to video.results). Deliveries to one tenant
may arrive out of order. Duplicates are recognised by a key of tenant, request id and status
(`dedupe.delivery_key`) in a bounded in-memory LRU (see `dedupe.py` for what production needs); receivers get
the same key in `X-Vidgen-Delivery` to dedupe on their side too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import ssl
import sys
from collections.abc import Callable

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from consumer.fetching import IPNetwork, Resolve, UrlRules
from consumer.kafka import client_options, ensure_topics, make_producer
from consumer.logs import configure_logging
from consumer.offsets import OffsetTracker
from consumer.publisher import dead_letter_headers
from consumer.settings import Settings
from consumer.tracing import extract_context
from producer_examples.dedupe import RecentKeys, delivery_key
from producer_examples.delivery import Outcome, WebhookDelivery, WebhookUnresolved, WebhookUrlForbidden
from producer_examples.lanes import TenantLanes
from producer_examples.notifier_settings import NotifierSettings, describe_errors
from producer_examples.telemetry import make_tracer_provider
from schemas.events import VideoResult

__all__ = ["Notifier", "main", "serve"]

log = logging.getLogger(__name__)

_POLL_MS = 100


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._notifier.joined = False
        await self._notifier.revoke(revoked)

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
        self._lanes = TenantLanes(
            max_concurrency=notifier.max_concurrency,
            tenant_concurrency=notifier.tenant_concurrency,
            breaker_failures=notifier.breaker_failures,
            breaker_open_s=notifier.breaker_open_s,
        )
        self._offsets = OffsetTracker()
        self._tasks: set[asyncio.Task[None]] = set()
        self._under_way: dict[str, asyncio.Event] = {}  # delivery key -> set when that delivery is over
        self._failure: BaseException | None = None
        self.joined = False

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    def health(self) -> dict[str, object]:
        return {"in_flight": self._offsets.in_flight(), "open_breakers": self._lanes.open_breakers()}

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; in-flight deliveries then get `shutdown_grace_s`, after which they are abandoned
        uncommitted. Raises what a delivery task could not survive (a DLQ the broker never acknowledged)."""
        try:
            while not stop.is_set() and self._failure is None:
                room = self._notifier.max_pending - self._offsets.in_flight()
                assigned = self._consumer.assignment()
                # Paused partitions keep the group membership (getmany goes on) while nothing more is read.
                (self._consumer.resume if room > 0 else self._consumer.pause)(*assigned)
                batch = await self._consumer.getmany(timeout_ms=_POLL_MS, max_records=max(room, 1))
                for tp, records in batch.items():
                    for record in records:
                        if tp in self._consumer.assignment():  # else revoked meanwhile: its new owner reads it
                            self._start(tp, record)
                await self._commit()
        finally:
            await self._drain()
        if self._failure is not None:
            raise self._failure

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Commit what the revoked partitions finished; what is still in flight is re-read by their next owner."""
        await self._commit()
        for tp in revoked:
            self._offsets.forget(tp)

    def _start(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._offsets.start(tp, record.offset)
        task = asyncio.create_task(self._handle(record))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, tp, record.offset))

    def _finished(self, tp: TopicPartition, offset: int, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return  # abandoned on shutdown: stays uncommitted
        if (error := task.exception()) is not None:
            self._failure = self._failure or error
            return
        self._offsets.finish(tp, offset)

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._notifier.shutdown_grace_s)
        if self._tasks:
            log.warning("%d delivery(ies) abandoned on shutdown; their results will be re-read", len(self._tasks))
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._commit()

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
            key = delivery_key(result.tenant_id, result.request_id, result.status)
            span.set_attribute("vidgen.delivery", key)
            if key in self._delivered:
                span.set_attribute("vidgen.duplicate", True)
                log.info("delivery %s already done; skipped", key)
                return
            earlier = self._under_way.get(key)
            if earlier is not None:  # the same delivery is under way: its outcome answers for this copy too
                span.set_attribute("vidgen.duplicate", True)
                await earlier.wait()
                log.info("delivery %s was under way; skipped", key)
                return
            done = self._under_way[key] = asyncio.Event()
            try:
                await self._deliver(record, result, key, span)
            finally:
                del self._under_way[key]
                done.set()

    async def _deliver(self, record: ConsumerRecord[bytes, bytes], result: VideoResult, key: str, span: Span) -> None:
        tenant = result.tenant_id or ""
        webhook = self._notifier.webhooks.get(tenant)
        if webhook is None:
            log.info("delivery %s: no webhook for its tenant; logged only", key)
            self._delivered.add(key)
            return
        breaker = self._lanes.breaker(tenant)
        if breaker.is_open:  # no need to wait for a slot only to be refused
            outcome = Outcome("endpoint_unavailable", 0, "the endpoint's circuit breaker is open")
        else:
            async with self._lanes.slot(tenant):
                outcome = await self._delivery.deliver(webhook, record.value or b"", delivery_id=key, breaker=breaker)
        if outcome.delivered:
            self._delivered.add(key)
            log.info("delivery %s to %s done (%d attempt(s))", key, tenant, outcome.attempts)
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

    async def _commit(self) -> None:
        offsets = self._offsets.take_committable()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the partitions' new owners re-read from the last commit (duplicate POSTs).
            log.warning("commit of %s failed: %r", offsets, exc)


async def serve(
    settings: Settings,
    notifier: NotifierSettings,
    stop: asyncio.Event,
    *,
    tracer: Tracer,
    on_http_port: Callable[[int], None] | None = None,
    trusted_networks: tuple[IPNetwork, ...] = (),
    ssl_context: ssl.SSLContext | None = None,
    resolver: Resolve | None = None,
) -> int:
    """Run until `stop` is set; returns the exit code.

    `trusted_networks`, `ssl_context` and `resolver` exist for tests and private deployments: networks exempt
    from the public-address rule, the CA bundle webhooks are verified against, and the DNS resolver."""
    running: Notifier | None = None

    async def healthz(_: web.Request) -> web.Response:
        state = running.health() if running else {}
        return web.json_response({"status": "ok", "consumer_group": bool(running and running.joined), **state})

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
        delivery = WebhookDelivery(
            rules=UrlRules(
                resolve_timeout_s=notifier.timeout_s,
                internal_hosts=notifier.allow_hosts,
                trusted_networks=trusted_networks,
                subject="webhook url",
                forbidden=WebhookUrlForbidden,
                unresolved=WebhookUnresolved,
            ),
            tracer=tracer,
            max_attempts=notifier.max_attempts,
            backoff_initial_s=notifier.backoff_initial_s,
            backoff_max_s=notifier.backoff_max_s,
            timeout_s=notifier.timeout_s,
            ssl_context=ssl_context,
            resolver=resolver,
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
        print(f"notifier: invalid configuration:\n{describe_errors(exc)}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # a variable that is not valid JSON; the message names it, not its value
        print(f"notifier: invalid configuration: {exc}", file=sys.stderr)
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
