"""The consume loop: fetch, process off the loop while polling with partitions paused, publish, then commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry import trace
from opentelemetry.trace import Tracer

from consumer.core.clock import WallClock, utc_now
from consumer.core.intake import parse_request
from consumer.core.job import Job, Record
from consumer.core.offsets import OffsetTracker
from consumer.core.pending import PendingJobs
from consumer.core.quotas import QuotaDecision
from consumer.core.results import Identity
from consumer.core.retries import Delivery, RetryPolicy
from consumer.core.slots import Slot, StageSlots
from consumer.errors import VidgenError
from consumer.job.pipeline import JobPipeline
from consumer.job.runner import JobRunner, ProgressSink
from consumer.kafka.progress import ProgressReporter
from consumer.kafka.publisher import Publisher
from consumer.memory.gate import MemoryGate
from consumer.settings import Settings
from consumer.telemetry.logs import job_context
from consumer.telemetry.metrics import Metrics
from consumer.telemetry.tracing import extract_context
from schemas.events import VideoRequest

__all__ = ["ConsumerFactory", "ProgressSink", "Record", "Worker"]

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[ConsumerRebalanceListener], AIOKafkaConsumer]

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
        pipeline: JobPipeline,
        identity: Identity,
        metrics: Metrics,
        tracer: Tracer | None = None,
        clock: WallClock = utc_now,
        on_progress: ProgressSink | None = None,
        memory: MemoryGate | None = None,
        progress: ProgressReporter | None = None,
    ) -> None:
        self._settings = settings
        self._consumer_factory = consumer_factory
        self._publisher = publisher
        self._retry = RetryPolicy.from_settings(settings)
        self._tracer = tracer or trace.get_tracer(__name__)
        self._metrics = metrics
        self._memory = memory
        self._clock = clock
        self._next_lag_report = 0.0
        self._tracker = OffsetTracker()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._pending = PendingJobs(settings, clock=time.monotonic)
        self._slots = StageSlots(rendering=settings.max_inflight_jobs, finishing=settings.max_finishing_jobs)
        self._accepting = True
        self._runner = JobRunner(
            settings=settings,
            publisher=publisher,
            pipeline=pipeline,
            identity=identity,
            metrics=metrics,
            tracer=tracer,
            clock=clock,
            on_progress=on_progress,
            memory=memory,
            progress=progress,
            release=self._pending.release,
        )
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
            self._give_up_deferred()
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
        delivery = self._delivery(tp, record)
        not_before = delivery.not_before_ms
        if not_before is not None and not_before > now_ms:
            self._require_consumer().seek(tp, record.offset)
            self._delayed[tp] = not_before
            return False
        self._tracker.start(tp, record.offset)
        received_at = self._clock()
        outcome = parse_request(record.value, max_bytes=self._settings.max_record_bytes)
        if isinstance(outcome, VideoRequest):
            self._pending.push(Job(tp, record, outcome, received_at, delivery))
        else:
            self._spawn(tp, record, self._runner.answer(record, outcome, received_at))
        return True

    def _start_admitted(self) -> None:
        """Start queued requests while job slots are free, in the order the tenant quotas allow. Runs after each
        fetch and whenever a slot frees up, so a finished render hands its slot on without waiting for a poll."""
        while self._accepting and self._slots.free and (taken := self._pending.take()) is not None:
            job, decision = taken
            if not decision.admitted:
                self._spawn(job.tp, job.record, self._runner.refuse(job, decision))
                continue
            slot = self._slots.take()

            def rendered(slot: Slot = slot) -> None:
                if self._slots.advance(slot):
                    self._start_admitted()

            def done(slot: Slot = slot) -> None:
                if self._slots.release(slot):
                    self._start_admitted()

            self._spawn(job.tp, job.record, self._runner.run(job, rendered), on_done=done)

    def _delivery(self, tp: TopicPartition, record: Record) -> Delivery:
        """The retry state of a record. Only the workers write the retry topic; on any other topic these headers
        are whatever a client sent, and a forged not-before time would hold every tenant's records behind it."""
        return Delivery.from_headers(record.headers) if tp.topic == self._settings.retry_topic else Delivery()

    def _give_up_deferred(self) -> None:
        """Deferred jobs never keep the pending queue full, so a tenant over its quota cannot stop other tenants'
        records from being fetched: those the queue gives up are refused (past the tenant's max wait) or handed to
        the retry topic until their turn in the tenant's budget."""
        for job, decision in self._pending.overflow():
            work = self._runner.refuse(job, decision) if decision.action == "reject" else self._defer(job, decision)
            self._spawn(job.tp, job.record, work)

    async def _defer(self, job: Job, decision: QuotaDecision) -> bool:
        """Hand a deferred job to the retry topic until its turn comes (attempt, round and trace context kept);
        refuse it (`rate_limited`) instead if the topic will not take the copy."""
        record, request = job.record, job.request
        delay_s = self._retry.deferral_delay(decision.retry_after_s)
        headers = job.delivery.deferred(
            record.headers,
            waiting_since_ms=int(job.first_asked_at.timestamp() * 1000),
            now_ms=self._now_ms(),
            delay_s=delay_s,
        )
        context = job_context(
            request_id=request.request_id,
            tenant_id=request.tenant_id,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        with self._tracer.start_as_current_span("quota deferral", context=extract_context(record.headers)), context:
            try:
                await self._publisher.retry_later(record, headers=headers)
            except VidgenError as exc:  # refused for good (e.g. too large for the topic): answer it now instead
                log.warning("request %s cannot be deferred (%s); refusing it", request.request_id, exc.code)
                refusal = QuotaDecision("reject", reason=f"{decision.reason}; cannot be deferred")
                return await self._runner.refuse(job, refusal)
            log.info("request %s deferred by its tenant's quota for %.1f s", request.request_id, delay_s)
        return True

    def _spawn(
        self,
        tp: TopicPartition,
        record: Record,
        work: Coroutine[Any, Any, bool],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        async def job() -> None:
            try:
                if await work:  # False: abandoned unanswered, so the offset must not be committed past it
                    self._tracker.finish(tp, record.offset)
            finally:
                if on_done is not None:
                    on_done()
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
        self._runner.draining = True
        self._accepting = False
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


async def _finish_or_cancel(tasks: list[asyncio.Task[None]], *, grace_s: float) -> None:
    if grace_s > 0:
        await asyncio.wait(tasks, timeout=grace_s)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            log.error("job failed outside the result path: %r", outcome)
