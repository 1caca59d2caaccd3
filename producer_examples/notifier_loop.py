"""The notifier's consumption loop: concurrent deliveries, ordered commits, dedupe and the DLQ.

At least once: an offset is committed only after every delivery its result calls for (`dispatches`: the tenant's
operator webhook and its own endpoints) was delivered, skipped (a duplicate) or dead-lettered, and only as part of
the contiguous finished prefix of its partition (`consumer.core.offsets.OffsetTracker`). Deliveries run concurrently
(`tenant_bounds.TenantBounds`); while `max_pending` records are read and unanswered, the partitions are paused and
polling goes on, so the group membership holds. Progress events (when tenant endpoints ask for them) are read in the
same group and delivered best effort: one attempt, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from consumer.core.clock import utc_now
from consumer.core.cloud_events import NOTIFICATION_DEAD_LETTER_TYPE, dead_letter_event
from consumer.core.dlq import dead_letter_headers
from consumer.core.intake import usable_id
from consumer.core.offsets import OffsetTracker
from consumer.settings import Settings
from consumer.telemetry.tracing import extract_context, messaging_attributes
from producer_examples.dedupe import RecentKeys
from producer_examples.delivery import Outcome, WebhookDelivery
from producer_examples.dispatches import Dispatch, DispatchPlanner
from producer_examples.notifier_metrics import NotifierMetrics
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.tenant_bounds import TenantBounds
from schemas.events import VideoProgress, VideoResult

__all__ = ["Notifier"]

log = logging.getLogger(__name__)

_POLL_MS = 100


class _NotifierGroupListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
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
        planner: DispatchPlanner,
        tracer: Tracer,
        metrics: NotifierMetrics,
    ) -> None:
        self._settings = settings
        self._planner = planner
        self._metrics = metrics
        self._notifier = notifier
        self._consumer = consumer
        self._producer = producer
        self._delivery = delivery
        self._tracer = tracer
        self._delivered = RecentKeys(notifier.dedupe_capacity)
        self._lanes = TenantBounds(
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
        metrics.watch(in_flight=self._offsets.in_flight, open_breakers=self._lanes.open_breakers)

    def listener(self) -> ConsumerRebalanceListener:
        return _NotifierGroupListener(self)

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
                messaging_attributes(
                    "process",
                    record.topic,
                    key=None if record.key is None else record.key.decode("utf-8", "replace"),
                    group=self._notifier.group,
                    partition=record.partition,
                    offset=record.offset,
                )
            )
            if record.topic == self._settings.progress_topic:
                await self._progress(record)
                return
            try:
                result = VideoResult.model_validate_json(record.value or b"")
            except ValidationError as exc:
                span.set_status(Status(StatusCode.ERROR, "invalid_result"))
                await self._dead_letter(record, "invalid_result", f"not a v1 VideoResult: {exc.error_count()} error(s)")
                return
            dispatches = self._planner.for_result(result, record.value or b"")
            span.set_attribute("vidgen.deliveries", len(dispatches))
            if not dispatches:
                log.info("result %s: no webhook for its tenant; logged only", result.request_id)
                self._metrics.results.labels(outcome="no_webhook").inc()
                return
            await asyncio.gather(*(self._once(record, dispatch, span) for dispatch in dispatches))

    async def _progress(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Best effort, as progress itself: throttled, one attempt each, nothing dead-lettered."""
        try:
            progress = VideoProgress.model_validate_json(record.value or b"")
        except ValidationError:
            self._metrics.results.labels(outcome="invalid_progress").inc()
            return
        outcomes = await asyncio.gather(*(self._send(dispatch) for dispatch in self._planner.for_progress(progress)))
        for outcome in outcomes:
            self._metrics.results.labels(
                outcome="progress_delivered" if outcome.delivered else "progress_dropped"
            ).inc()

    async def _once(self, record: ConsumerRecord[bytes, bytes], dispatch: Dispatch, span: Span) -> None:
        """One delivery, unless it was done already or is under way (its outcome then answers for this copy)."""
        key = dispatch.message_id
        span.add_event("delivery", {"vidgen.delivery": key, "vidgen.destination": dispatch.destination})
        if key in self._delivered:
            self._metrics.results.labels(outcome="duplicate").inc()
            span.set_attribute("vidgen.duplicate", True)
            log.info("delivery %s already done; skipped", key)
            return
        earlier = self._under_way.get(key)
        if earlier is not None:
            self._metrics.results.labels(outcome="duplicate").inc()
            span.set_attribute("vidgen.duplicate", True)
            await earlier.wait()
            log.info("delivery %s was under way; skipped", key)
            return
        done = self._under_way[key] = asyncio.Event()
        try:
            outcome = await self._send(dispatch)
            if outcome.delivered:
                self._metrics.results.labels(outcome="delivered").inc()
                self._delivered.add(key)
                log.info("delivery %s to %s done (%d attempt(s))", key, dispatch.destination, outcome.attempts)
                return
            span.set_status(Status(StatusCode.ERROR, outcome.code))
            span.set_attribute("error.type", outcome.code)
            await self._dead_letter(record, outcome.code, outcome.message, attempts=outcome.attempts, to=dispatch)
        finally:
            del self._under_way[key]
            done.set()

    async def _send(self, dispatch: Dispatch) -> Outcome:
        """The POST within the tenant's bound, unless the destination's breaker is open."""
        breaker = self._lanes.breaker(dispatch.destination)
        if breaker.is_open:  # no need to wait for a slot only to be refused
            return Outcome("endpoint_unavailable", 0, "the endpoint's circuit breaker is open")
        async with self._lanes.slot(dispatch.tenant):
            return await self._delivery.deliver(dispatch, breaker=breaker)

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        code: str,
        message: str,
        *,
        attempts: int = 0,
        to: Dispatch | None = None,
    ) -> None:
        """A copy of the result with what went wrong; `vidgen-webhook-endpoint` names a tenant endpoint that failed
        (none: the operator's webhook, or a result that could not be read)."""
        endpoint = to.endpoint_id if to is not None else None
        headers = [
            *dead_letter_headers(record, code=code, message=message, worker_id=self._settings.worker_id),
            ("vidgen-delivery-attempts", str(attempts).encode()),
            *([("vidgen-webhook-endpoint", endpoint.encode())] if endpoint else []),
            *dead_letter_event(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                code=f"{code}:{to.message_id if to else ''}",  # one result, several deliveries: an id each
                value=record.value,
                request_id=usable_id(record.key.decode("utf-8", "replace")) if record.key else None,
                source=self._settings.event_source,
                time=utc_now(),
                event_type=NOTIFICATION_DEAD_LETTER_TYPE,
            ),
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
        self._metrics.results.labels(outcome=code).inc()
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
