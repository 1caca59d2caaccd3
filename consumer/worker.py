"""The consume loop: fetch, process off the loop while polling with partitions paused, publish, then commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from consumer.errors import TooLargeForWorker
from consumer.intake import DeadLetter, Rejection, parse_request
from consumer.logs import job_context
from consumer.memory.admission import Reject
from consumer.memory.gate import MemoryGate
from consumer.memory.modes import MemoryMode
from consumer.metrics import Metrics
from consumer.offsets import OffsetTracker
from consumer.pending import Job, PendingJobs
from consumer.processing import Clock, Processor, utc_now
from consumer.progress import ProgressReporter
from consumer.publisher import Publisher
from consumer.results import Identity, failed, rejected
from consumer.retry_policy import Delivery, RetryPolicy
from consumer.settings import Settings
from consumer.tracing import extract_context
from schemas.events import Timings, VideoRequest, VideoResult

__all__ = ["ConsumerFactory", "ProgressSink", "Record", "Worker"]

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[ConsumerRebalanceListener], AIOKafkaConsumer]
ProgressSink = Callable[[str, int, int], None]
Record: TypeAlias = ConsumerRecord[bytes, bytes]

_POLL_MS = 100
_BROKER_CHECK_TIMEOUT_S = 3.0
_LAG_REPORT_S = 5.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker._on_assigned(assigned)


class Worker:
    """Consumer-group member. At-least-once: a record's offset is committed only after its result (or its
    DLQ or retry-topic copy) was acknowledged by the broker, and only as part of a contiguous finished prefix."""

    def __init__(
        self,
        *,
        settings: Settings,
        consumer_factory: ConsumerFactory,
        publisher: Publisher,
        processor: Processor,
        identity: Identity,
        metrics: Metrics,
        tracer: Tracer | None = None,
        clock: Clock = utc_now,
        on_progress: ProgressSink | None = None,
        memory: MemoryGate | None = None,
        progress: ProgressReporter | None = None,
    ) -> None:
        self._memory = memory
        self._progress = progress
        self._next_lag_report = 0.0
        self._draining = False
        self._settings = settings
        self._consumer_factory = consumer_factory
        self._publisher = publisher
        self._processor = processor
        self._identity = identity
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock = clock
        self._on_progress = on_progress
        self._retry = RetryPolicy.from_settings(settings)
        self._tracker = OffsetTracker()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._pending = PendingJobs(settings)
        self._delayed: dict[TopicPartition, int] = {}  # retry-topic partitions waiting for a not-before time
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

    async def check_broker(self) -> str | None:
        """Readiness: None when the brokers answer a metadata request, else what is wrong."""
        if self._consumer is None:
            return "consumer not started"
        try:
            await asyncio.wait_for(self._consumer.topics(), _BROKER_CHECK_TIMEOUT_S)
        except (KafkaError, TimeoutError, OSError) as exc:
            return f"Kafka brokers unreachable: {exc!r}"
        return None

    async def _poll(self, *, accepting: bool) -> None:
        consumer = self._require_consumer()
        # While a job waits for device memory nothing more is fetched: the backlog stays in Kafka.
        waiting = self._memory is not None and self._memory.waiting
        room = self._pending.room if accepting and not waiting else 0
        assigned = consumer.assignment()
        now_ms = self._now_ms()
        self._delayed = {tp: until for tp, until in self._delayed.items() if until > now_ms and tp in assigned}
        # Paused partitions keep the member in the group: getmany() is still awaited, heartbeats flow, and a
        # render longer than max_poll_interval_ms never triggers a rebalance (aiokafka issue #848).
        hold = set(assigned) if room <= 0 else set(self._delayed)
        consumer.pause(*hold)
        consumer.resume(*(set(assigned) - hold))
        self._metrics.partitions_paused.set(len(consumer.paused()))
        batch = await consumer.getmany(timeout_ms=self._poll_timeout_ms(), max_records=max(room, 1))
        for tp, records in batch.items():
            for record in records:
                self._metrics.records_fetched.inc()
                if not self._intake(tp, record, now_ms):
                    break
        if accepting:
            self._start_admitted()
        await self._commit_ready()
        if time.monotonic() >= self._next_lag_report:
            self._next_lag_report = time.monotonic() + _LAG_REPORT_S
            await self._report_lag(consumer)

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            end = consumer.highwater(tp)  # known after the partition's first fetch
            if end is not None:
                lag = max(0, end - await consumer.position(tp))
                self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    def _poll_timeout_ms(self) -> int:
        wake = self._pending.wake_in_s
        return _POLL_MS if wake is None else max(1, min(_POLL_MS, int(wake * 1000)))

    def _intake(self, tp: TopicPartition, record: Record, now_ms: int) -> bool:
        """Answer an unusable record at once, queue a request, or (a retry not yet due) rewind to it and hold
        its partition until it is due. False: the rest of this partition's batch is re-fetched later."""
        not_before = Delivery.from_headers(record.headers).not_before_ms
        if not_before is not None and not_before > now_ms:
            self._require_consumer().seek(tp, record.offset)
            self._delayed[tp] = not_before
            return False
        self._tracker.start(tp, record.offset)
        received_at = self._clock()
        outcome = parse_request(record.value, max_bytes=self._settings.max_record_bytes)
        if isinstance(outcome, VideoRequest):
            self._pending.push(Job(tp, record, outcome, received_at))
        else:
            self._spawn(tp, record, self._answer(record, outcome, received_at))
        return True

    def _start_admitted(self) -> None:
        """Start queued requests while job slots are free, in the order the tenant quotas allow."""
        while len(self._running) < self._settings.max_inflight_jobs and (taken := self._pending.take()) is not None:
            job, decision = taken
            if decision.admitted:
                self._spawn(job.tp, job.record, self._run(job))
            else:
                error = decision.error(job.request.tenant_id)
                result = failed(job.request, error, timings=_timings(job), attempt=1, identity=self._identity)
                self._spawn(job.tp, job.record, self._answer(job.record, result, job.received_at))

    def _spawn(self, tp: TopicPartition, record: Record, work: Coroutine[Any, Any, bool]) -> None:
        async def job() -> None:
            if await work:  # False: abandoned unanswered, so the offset must not be committed past it
                self._tracker.finish(tp, record.offset)
            self._metrics.inflight.set(len(self._running))

        task = asyncio.create_task(job(), name=f"job-{tp.topic}-{tp.partition}-{record.offset}")
        tasks = self._tasks.setdefault(tp, set())
        for bucket in (tasks, self._running):
            bucket.add(task)
            task.add_done_callback(bucket.discard)
        task.add_done_callback(self._check_crash)
        self._metrics.inflight.set(len(self._running))

    def _check_crash(self, task: asyncio.Task[None]) -> None:
        """A job that died outside the result path can never be committed past: stop rather than wedge."""
        if task.cancelled() or task.exception() is None:
            return
        self.crash = task.exception()
        log.critical("job %s crashed: %r; stopping the worker", task.get_name(), self.crash)

    async def _run(self, job: Job) -> bool:
        try:
            with self._span(job.record) as span, _job_logs(job.record, job.request.request_id, job.request.tenant_id):
                mode = None
                if self._memory is not None:
                    with self._tracer.start_as_current_span("admission wait"):
                        admission = await self._memory.admit(job.request, stop=lambda: self._draining)
                    if admission is None:
                        return False
                    if isinstance(admission, Reject):
                        error = TooLargeForWorker(admission.message)
                        refusal = failed(job.request, error, timings=_timings(job), attempt=1, identity=self._identity)
                        await self._publish(span, refusal)
                        return True
                    mode = admission.mode
                try:
                    result = await self._process_with_retries(job.request, job.record, job.received_at, mode)
                finally:
                    if self._memory is not None:
                        self._memory.release(job.request)
                if result is not None:
                    await self._publish(span, result)
                return True
        finally:
            self._pending.release(job)

    async def _answer(
        self, record: Record, outcome: DeadLetter | Rejection | VideoResult, received_at: datetime
    ) -> bool:
        """Records answered without rendering: dead letters, rejections, quota refusals."""
        request_id = None if isinstance(outcome, DeadLetter) else outcome.request_id
        tenant_id = None if isinstance(outcome, DeadLetter) else outcome.tenant_id
        with self._span(record) as span, _job_logs(record, request_id, tenant_id):
            if isinstance(outcome, DeadLetter):
                _mark_error(span, outcome.code)
                self._metrics.dead_letters.labels(code=outcome.code).inc()
                await self._publisher.dead_letter(record, code=outcome.code, message=outcome.message)
                return True
            if isinstance(outcome, Rejection):
                outcome = rejected(outcome, received_at=received_at, identity=self._identity)
            await self._publish(span, outcome)
            return True

    def _span(self, record: Record) -> contextlib.AbstractContextManager[Span]:
        span = self._tracer.start_as_current_span(
            f"process {record.topic}", context=extract_context(record.headers), kind=SpanKind.CONSUMER
        )
        return _described(span, record, self._settings.consumer_group)

    async def _publish(self, span: Span, result: VideoResult) -> None:
        if result.error is not None:
            _mark_error(span, result.error.code)
        self._metrics.jobs.labels(status=result.status, error_code=result.error.code if result.error else "").inc()
        await self._publisher.result(result)

    async def _process_with_retries(
        self, request: VideoRequest, record: Record, received_at: datetime, mode: MemoryMode | None
    ) -> VideoResult | None:
        """Retry transient failures in process with backoff, then hand the request to the retry topic, and after
        the last round fail it for good (result `failed`, retryable) with a copy in the DLQ. None: handed on."""
        delivery = Delivery.from_headers(record.headers)
        progress = self._progress_for(request, attempt=delivery.attempt)
        started = time.monotonic()
        attempt = delivery.attempt
        for retry in range(1, self._retry.attempts + 1):
            result = await self._processor.process(
                request,
                received_at=received_at,
                record_time=datetime.fromtimestamp(record.timestamp / 1000, UTC),
                attempt=attempt,
                on_progress=progress,
                memory_mode=mode,
            )
            if result.status != "failed" or result.error is None or not result.error.retryable:
                return result
            failure = result.error
            pause = self._retry.backoff(retry)
            if retry == self._retry.attempts or time.monotonic() - started + pause > self._retry.deadline_s:
                break
            log.warning("request %s attempt %d failed (%s); retrying", request.request_id, attempt, result.error.code)
            await asyncio.sleep(pause)
            attempt += 1
        if delivery.round < self._retry.topic_rounds:
            headers = delivery.next_round(
                record.headers, next_attempt=attempt + 1, now_ms=self._now_ms(), delay_s=self._retry.topic_delay_s
            )
            await self._publisher.retry_later(record, headers=headers)
            log.warning("request %s moved to the retry topic after attempt %d", request.request_id, attempt)
            return None
        await self._publisher.dead_letter(record, code=failure.code, message=failure.message)
        return result

    def _progress_for(self, request: VideoRequest, *, attempt: int) -> Callable[[int, int], None] | None:
        steps: list[Callable[[int, int], None]] = []
        if self._progress is not None:
            steps.append(self._progress.started(request, attempt=attempt))
        if (sink := self._on_progress) is not None:
            steps.append(lambda step, total: sink(request.request_id, step, total))
        if not steps:
            return None

        def each(step: int, total: int) -> None:
            for call in steps:
                call(step, total)

        return each

    async def _commit_ready(self) -> None:
        ready = self._tracker.take_committable()
        if not ready:
            return
        try:
            await self._require_consumer().commit(dict(ready))
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on; the new owner re-reads from the last commit (a harmless duplicate).
            log.warning("commit of %s failed: %r", ready, exc)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined = True
        self._metrics.rebalances.inc()
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (and commit) in-flight jobs of revoked partitions within the rebalance grace, else abandon
        them uncommitted; the next owner re-reads them."""
        tasks = [task for tp in revoked for task in self._tasks.get(tp, ())]
        self._pending.drop(revoked)
        if tasks:
            log.info(
                "revocation: waiting up to %.0fs for %d in-flight job(s)", self._settings.rebalance_grace_s, len(tasks)
            )
            await _finish_or_cancel(tasks, grace_s=self._settings.rebalance_grace_s)
        await self._commit_ready()
        for tp in revoked:
            with contextlib.suppress(KeyError):  # never reported: nothing fetched yet
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            self._tracker.forget(tp)
            self._tasks.pop(tp, None)
            self._delayed.pop(tp, None)
        self._metrics.inflight.set(len(self._running))

    async def _drain(self) -> None:
        """Shutdown: no new records; keep polling (paused) so the member stays alive while jobs finish."""
        deadline = time.monotonic() + self._settings.shutdown_grace_s
        self._draining = True
        self._pending.drop()
        log.info("draining %d in-flight job(s)", len(self._running))
        while list(self._running) and time.monotonic() < deadline:
            await self._poll(accepting=False)
        leftover = list(self._running)
        if leftover:
            log.warning("grace period over: abandoning %d job(s) without commit", len(leftover))
            await _finish_or_cancel(leftover, grace_s=0)
        await self._commit_ready()

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("worker is not running")
        return self._consumer


@contextlib.contextmanager
def _described(manager: contextlib.AbstractContextManager[Span], record: Record, group: str) -> Iterator[Span]:
    """A process span with the OpenTelemetry messaging semantic conventions for a consumed Kafka record."""
    with manager as span:
        _describe(span, record, group)
        yield span


def _describe(span: Span, record: Record, group: str) -> None:
    span.set_attributes(
        {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        }
    )
    if record.key is not None:
        span.set_attribute("messaging.kafka.message.key", record.key.decode("utf-8", "replace"))


def _job_logs(record: Record, request_id: str | None, tenant_id: str | None) -> contextlib.AbstractContextManager[None]:
    return job_context(
        request_id=request_id, tenant_id=tenant_id, topic=record.topic, partition=record.partition, offset=record.offset
    )


def _timings(job: Job) -> Timings:
    return Timings(received_at=job.received_at, completed_at=job.received_at)


def _mark_error(span: Span, code: str) -> None:
    span.set_status(Status(StatusCode.ERROR, code))
    span.set_attribute("error.type", code)


async def _finish_or_cancel(tasks: list[asyncio.Task[None]], *, grace_s: float) -> None:
    if grace_s > 0:
        await asyncio.wait(tasks, timeout=grace_s)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            log.error("job failed outside the result path: %r", outcome)
