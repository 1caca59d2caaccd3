"""The consume loop: fetch, hand records to the scheduler, keep polling with partitions paused while busy, commit.

It owns the Kafka consumer: what to fetch (nothing while the pending queue is full or a job waits for memory; a
retry-topic partition not before its head record is due; newly assigned partitions not before the control and
attempts topics are read as far as they reached at the assignment), intake (an unusable record is answered at once,
a request is queued), commits of the finished prefix, rebalances and the drain at shutdown. Which job runs when is
the scheduler's (`consumer/worker/scheduler.py`, built in the wiring and passed in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from consumer.core.clock import WallClock, utc_now
from consumer.core.intake import parse_request
from consumer.core.job import Job, Record
from consumer.core.priority_lanes import bulk_prefetch
from consumer.core.retries import Delivery
from consumer.kafka.state_topics import StateTopicsFollower
from consumer.memory.gate import MemoryGate
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.scheduler import JobScheduler
from schemas.events import VideoRequest

__all__ = ["ConsumeLoop", "ConsumerFactory"]

log = logging.getLogger(__name__)

ConsumerFactory = Callable[[ConsumerRebalanceListener], AIOKafkaConsumer]

_POLL_MS = 100
_BROKER_CHECK_TIMEOUT_S = 3.0
_LAG_REPORT_S = 5.0


class _GroupListener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self, worker: ConsumeLoop) -> None:
        self._worker = worker

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._worker._on_assigned(assigned)


class ConsumeLoop:
    """Consumer-group member. At-least-once: a record's offset is committed only after its result (or its
    DLQ or retry-topic copy) was acknowledged by the broker, and only as part of a contiguous finished prefix."""

    def __init__(
        self,
        *,
        settings: Settings,
        consumer_factory: ConsumerFactory,
        scheduler: JobScheduler,
        metrics: Metrics,
        memory: MemoryGate | None = None,
        clock: WallClock = utc_now,
        controls: StateTopicsFollower | None = None,
    ) -> None:
        self._settings = settings
        self._consumer_factory = consumer_factory
        self._metrics = metrics
        self._memory = memory
        self._clock = clock
        self._controls = controls
        self._scheduler = scheduler
        self._catching_up: asyncio.Future[None] | None = None  # until the controls are read as of the assignment
        self._next_lag_report = 0.0
        self._delayed: dict[TopicPartition, int] = {}  # retry-topic partitions waiting for a not-before time
        self._bulk_prefetch = bulk_prefetch(settings.max_inflight_jobs)
        self._consumer: AIOKafkaConsumer | None = None
        self.joined = False

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        """Consume until `stop` is set, then drain: finish in-flight jobs within the grace period, commit,
        leave the group. With `burst`, also stop once everything there was is answered: nothing queued or running
        and every assigned partition read to its end (arq's burst mode; tests end this way)."""
        self._consumer = self._consumer_factory(_GroupListener(self))
        await self._consumer.start()
        reacting = asyncio.create_task(self._scheduler.react(), name="scheduler")
        reacting.add_done_callback(self._scheduler.note_crash)
        try:
            while not stop.is_set() and self._scheduler.crash is None:
                await self._poll(accepting=True)
                if burst and await self._caught_up():
                    log.info("burst: everything fetched is answered; stopping")
                    break
            await self._drain()
            if self._scheduler.crash is not None:
                raise RuntimeError("a job crashed outside the result path") from self._scheduler.crash
        finally:
            waiting = [task for task in (reacting, self._catching_up) if task is not None]
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
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
        room = self._scheduler.pending.room if accepting and not waiting else 0
        assigned = consumer.assignment()
        now_ms = self._now_ms()
        self._delayed = {tp: until for tp, until in self._delayed.items() if until > now_ms and tp in assigned}
        # Paused partitions keep the member in the group: getmany() is still awaited, heartbeats flow, and a
        # render longer than max_poll_interval_ms never triggers a rebalance (aiokafka issue #848).
        hold = set(assigned) if room <= 0 or self._unready() else set(self._delayed)
        if self._bulk_fetched():  # enough bulk work at hand: the backlog waits in Kafka, room stays for interactive
            hold |= {tp for tp in assigned if tp.topic == self._settings.bulk_topic}
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
            self._scheduler.start_admitted()
            self._scheduler.give_up_deferred()
        await self._commit_ready()
        if time.monotonic() >= self._next_lag_report and await self._report_lag(consumer):
            self._next_lag_report = time.monotonic() + _LAG_REPORT_S

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> bool:
        """The lag of each partition fetched so far; False while none was (after an assignment: tried again at the
        next poll rather than in `_LAG_REPORT_S`)."""
        reported = False
        for tp in consumer.assignment():
            end = consumer.highwater(tp)  # known after the partition's first fetch
            if end is not None:
                lag = max(0, end - await consumer.position(tp))
                self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
                reported = True
        return reported

    async def _caught_up(self) -> bool:
        """Burst mode's end: a member with nothing queued, running or waiting for its not-before time, whose every
        assigned partition was fetched to its end."""
        if not self.joined or not self._scheduler.idle or self._delayed:
            return False
        consumer = self._require_consumer()
        for tp in consumer.assignment():
            end = consumer.highwater(tp)  # None until the partition's first fetch answered
            if end is None or await consumer.position(tp) < end:
                return False
        return True

    def _unready(self) -> bool:
        """Newly assigned partitions wait until the control and attempts topics are read as of the assignment."""
        if self._catching_up is not None and self._catching_up.done():
            self._catching_up = None
        return self._catching_up is not None

    def _poll_timeout_ms(self) -> int:
        wake = self._scheduler.pending.wake_in_s
        return _POLL_MS if wake is None else max(1, min(_POLL_MS, int(wake * 1000)))

    def _intake(self, tp: TopicPartition, record: Record, now_ms: int) -> bool:
        """Answer an unusable record at once, queue a request, or (a retry not yet due) rewind to it and hold
        its partition until it is due. False: the rest of this partition's batch is re-fetched later."""
        if tp.topic == self._settings.bulk_topic and self._bulk_fetched():
            self._require_consumer().seek(tp, record.offset)  # fetched past the bulk prefetch: read again later
            return False
        delivery = self._delivery(tp, record)
        not_before = delivery.not_before_ms
        if not_before is not None and not_before > now_ms:
            self._require_consumer().seek(tp, record.offset)
            self._delayed[tp] = not_before
            return False
        received_at = self._clock()
        outcome = parse_request(record.value, max_bytes=self._settings.max_record_bytes)
        if isinstance(outcome, VideoRequest):
            self._scheduler.queue(Job(tp, record, outcome, received_at, delivery))
        else:
            self._scheduler.answer(tp, record, outcome, received_at)
        return True

    def _bulk_fetched(self) -> bool:
        """The bulk jobs waiting in the pending queue reach the prefetch (`consumer/core/priority_lanes.py`)."""
        return self._scheduler.pending.waiting("bulk") >= self._bulk_prefetch

    def _delivery(self, tp: TopicPartition, record: Record) -> Delivery:
        """The retry state of a record, read once, here. Only the workers write the retry topic; on any other topic
        these headers are whatever a client sent: a forged not-before time would hold every tenant's records behind
        it, a forged attempt or round would skip retries."""
        return Delivery.from_headers(record.headers) if tp.topic == self._settings.retry_topic else Delivery()

    async def _commit_ready(self) -> None:
        ready = self._scheduler.offsets.take_committable()
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
        if self._controls is not None:
            self._catching_up = asyncio.ensure_future(self._controls.caught_up())
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish (and commit) in-flight jobs of revoked partitions within the rebalance grace, else abandon
        them uncommitted; the next owner re-reads them."""
        tasks = self._scheduler.tasks_of(revoked)
        self._scheduler.drop(revoked)
        if tasks:
            log.info(
                "revocation: waiting up to %.0fs for %d in-flight job(s)", self._settings.rebalance_grace_s, len(tasks)
            )
            await _finish_or_cancel(tasks, grace_s=self._settings.rebalance_grace_s)
        await self._commit_ready()
        for tp in revoked:
            with contextlib.suppress(KeyError):  # never reported: nothing fetched yet
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            self._delayed.pop(tp, None)
        self._scheduler.forget(revoked)

    async def _drain(self) -> None:
        """Shutdown: no new records; keep polling (paused) so the member stays alive while jobs finish."""
        deadline = time.monotonic() + self._settings.shutdown_grace_s
        self._scheduler.stop_accepting()
        log.info("draining %d in-flight job(s)", self._scheduler.running)
        while self._scheduler.running and time.monotonic() < deadline:
            await self._poll(accepting=False)
        leftover = self._scheduler.running_tasks()
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
