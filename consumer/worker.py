"""The consume loop: fetch, process off the loop while polling with partitions paused, publish, then commit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from consumer.intake import DeadLetter, Rejection, parse_request
from consumer.metrics import Metrics
from consumer.offsets import OffsetTracker
from consumer.processing import Clock, Processor, utc_now
from consumer.results import Identity, rejected
from consumer.settings import Settings
from consumer.tracing import Headers, extract_context, inject_headers
from schemas.events import VideoResult

__all__ = ["ConsumerFactory", "ProgressSink", "Worker"]

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[ConsumerRebalanceListener], AIOKafkaConsumer]
ProgressSink = Callable[[str, int, int], None]

_POLL_MS = 100


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker.joined = True
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Worker:
    """Consumer-group member. At-least-once: a record's offset is committed only after its result (or its
    DLQ copy) was acknowledged by the broker, and only as part of a contiguous finished prefix."""

    def __init__(
        self,
        *,
        settings: Settings,
        consumer_factory: ConsumerFactory,
        producer: AIOKafkaProducer,
        processor: Processor,
        identity: Identity,
        metrics: Metrics,
        tracer: Tracer | None = None,
        clock: Clock = utc_now,
        max_inflight: int = 1,
        on_progress: ProgressSink | None = None,
    ) -> None:
        self._settings = settings
        self._consumer_factory = consumer_factory
        self._producer = producer
        self._processor = processor
        self._identity = identity
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock = clock
        self._max_inflight = max_inflight
        self._on_progress = on_progress
        self._tracker = OffsetTracker()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self.joined = False
        self.crash: BaseException | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then drain: finish in-flight jobs within the grace period, commit,
        leave the group."""
        self._consumer = self._consumer_factory(_Listener(self))
        await self._consumer.start()
        try:
            while not stop.is_set() and self.crash is None:
                await self._poll(accepting=True)
            await self._drain()
            if self.crash is not None:
                raise RuntimeError("a job crashed outside the result path") from self.crash
        finally:
            await self._consumer.stop()
            self.joined = False

    async def _poll(self, *, accepting: bool) -> None:
        consumer = self._require_consumer()
        free = self._max_inflight - self._tracker.in_flight() if accepting else 0
        assigned = consumer.assignment()
        # Paused partitions keep the member in the group: getmany() is still awaited, heartbeats flow,
        # and a render longer than max_poll_interval_ms never triggers a rebalance.
        if free > 0:
            consumer.resume(*assigned)
        else:
            consumer.pause(*assigned)
        self._metrics.partitions_paused.set(len(consumer.paused()))
        batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=max(free, 1))
        for tp, records in batch.items():
            for record in records:
                self._start(tp, record)
        await self._commit_ready()

    def _start(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._tracker.start(tp, record.offset)
        task = asyncio.create_task(self._handle(tp, record), name=f"job-{tp.partition}-{record.offset}")
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(self._check_crash)
        self._metrics.inflight.set(self._tracker.in_flight())

    def _check_crash(self, task: asyncio.Task[None]) -> None:
        """A job that died outside the result path can never be committed past: stop rather than wedge."""
        if task.cancelled() or task.exception() is None:
            return
        self.crash = task.exception()
        log.critical("job %s crashed: %r; stopping the worker", task.get_name(), self.crash)

    async def _handle(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        received_at = self._clock()
        context = extract_context(record.headers)
        with self._tracer.start_as_current_span(
            f"process {record.topic}", context=context, kind=SpanKind.CONSUMER
        ) as span:
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self._settings.consumer_group,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                }
            )
            if record.key is not None:
                span.set_attribute("messaging.kafka.message.key", record.key.decode("utf-8", "replace"))
            outcome = parse_request(record.value, max_bytes=self._settings.max_record_bytes)
            if isinstance(outcome, DeadLetter):
                span.set_status(Status(StatusCode.ERROR, outcome.code))
                span.set_attribute("error.type", outcome.code)
                await self._dead_letter(record, outcome)
            else:
                result = await self._result_for(outcome, record, received_at)
                if result.error is not None:
                    span.set_status(Status(StatusCode.ERROR, result.error.code))
                    span.set_attribute("error.type", result.error.code)
                await self._publish_result(result)
        self._tracker.finish(tp, record.offset)
        self._metrics.inflight.set(self._tracker.in_flight())

    async def _result_for(
        self, outcome: Any, record: ConsumerRecord[bytes, bytes], received_at: datetime
    ) -> VideoResult:
        if isinstance(outcome, Rejection):
            return rejected(outcome, received_at=received_at, identity=self._identity)
        request_id = outcome.request_id
        progress = None
        if self._on_progress is not None:
            sink = self._on_progress

            def progress(step: int, total: int) -> None:
                sink(request_id, step, total)

        return await self._processor.process(
            outcome,
            received_at=received_at,
            record_time=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            on_progress=progress,
        )

    async def _publish_result(self, result: VideoResult) -> None:
        error_code = result.error.code if result.error else ""
        self._metrics.jobs.labels(status=result.status, error_code=error_code).inc()
        with self._tracer.start_as_current_span(f"send {self._settings.results_topic}", kind=SpanKind.PRODUCER) as span:
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": self._settings.results_topic,
                    "messaging.kafka.message.key": result.request_id,
                }
            )
            await self._send(
                self._settings.results_topic,
                key=result.request_id.encode("utf-8"),
                value=result.model_dump_json().encode("utf-8"),
                headers=inject_headers(),
            )
        log.info("request %s %s", result.request_id, result.status)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], letter: DeadLetter) -> None:
        self._metrics.dead_letters.labels(code=letter.code).inc()
        headers: Headers = [
            *list(record.headers or ()),
            ("vidgen-error-code", letter.code.encode()),
            ("vidgen-error-message", letter.message.encode("utf-8")),
            ("vidgen-original-topic", record.topic.encode("utf-8")),
            ("vidgen-original-partition", str(record.partition).encode()),
            ("vidgen-original-offset", str(record.offset).encode()),
            ("vidgen-worker-id", self._identity.worker_id.encode("utf-8")),
        ]
        await self._send(self._settings.dlq_topic, key=record.key, value=record.value, headers=headers)
        log.warning("record %s[%d]@%d dead-lettered: %s", record.topic, record.partition, record.offset, letter.code)

    async def _send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Publish and wait for the broker's ack. A broker outage is waited out: the offset stays uncommitted,
        so giving up here (shutdown) loses nothing."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(KafkaError),
            wait=wait_exponential(multiplier=0.2, max=10) + wait_random(0, 0.5),
            before_sleep=lambda state: log.warning(
                "publish to %s failed (attempt %d), retrying: %r",
                topic,
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
        ):
            with attempt:
                await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def _commit_ready(self) -> None:
        ready = self._tracker.take_committable()
        if not ready:
            return
        try:
            await self._require_consumer().commit(dict(ready))
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on; the new owner re-reads from the last commit (a harmless duplicate).
            log.warning("commit of %s failed: %r", ready, exc)

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (and commit) in-flight jobs of revoked partitions within the grace period, else abandon
        them uncommitted; the next owner re-reads them."""
        self.joined = False
        tasks = [task for tp in revoked for task in self._tasks.get(tp, ())]
        if tasks:
            log.info("revocation: waiting for %d in-flight job(s)", len(tasks))
            await _finish_or_cancel(tasks, grace_s=self._settings.shutdown_grace_s)
        await self._commit_ready()
        for tp in revoked:
            self._tracker.forget(tp)
            self._tasks.pop(tp, None)
        self._metrics.inflight.set(self._tracker.in_flight())

    async def _drain(self) -> None:
        """Shutdown: no new records; keep polling (paused) so the member stays alive while jobs finish."""
        deadline = time.monotonic() + self._settings.shutdown_grace_s
        log.info("draining %d in-flight job(s)", self._tracker.in_flight())
        while self._all_tasks() and time.monotonic() < deadline:
            await self._poll(accepting=False)
        leftover = self._all_tasks()
        if leftover:
            log.warning("grace period over: abandoning %d job(s) without commit", len(leftover))
            await _finish_or_cancel(leftover, grace_s=0)
        await self._commit_ready()

    def _all_tasks(self) -> list[asyncio.Task[None]]:
        return [task for tasks in self._tasks.values() for task in tasks]

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("worker is not running")
        return self._consumer


async def _finish_or_cancel(tasks: list[asyncio.Task[None]], *, grace_s: float) -> None:
    if grace_s > 0:
        await asyncio.wait(tasks, timeout=grace_s)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            log.error("job failed outside the result path: %r", outcome)
