"""The worker's view of two small compacted topics: cancel commands and the crash guard's counts.

`StateTopicsFollower` reads every partition of the control topic (cancel commands) and the attempts topic (the crash
guard's counts) from their start, without a consumer group, in a background task, for as long as the worker runs:
commands go into a `CancelIndex` (each new one is handed to the listeners: the scheduler), counts into
`StartCounts`. `caught_up()` returns once both topics were read as far as they reached when it was called: the
consume loop starts no record of a newly assigned partition before that, so a request another worker died on is
known as such, and a cancel issued before the worker started is applied.

`consumer.crash_guard.ledger.CrashGuardLedger` writes the counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumer.cancellation.commands import CancelCommand, CancelIndex, IgnoredCommand
from consumer.core.clock import WallClock, utc_now
from consumer.crash_guard.counts import StartCounts
from consumer.errors import VidgenError
from consumer.kafka.clients import client_options
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics

__all__ = ["StateTopicsFollower"]

log = logging.getLogger(__name__)

# tansu answers a fetch only once its max wait expires, so this bounds how late a cancel is seen there; Apache Kafka
# answers as soon as a record arrives.
_FETCH_WAIT_MS = 50
_POLL_MS = 200
_PRUNE_EVERY_S = 600.0
_ERROR_BACKOFF_S = 1.0


@dataclass
class _Barrier:
    """Waits for two fetch answers per partition after `since_ms` (one in flight then may predate it; the next was
    asked for after it), then for the position to reach the high watermark the second one reported."""

    since_ms: int
    done: asyncio.Future[None]
    answered: dict[TopicPartition, int] = field(default_factory=dict)  # first fetch answer seen after since_ms
    targets: dict[TopicPartition, int] = field(default_factory=dict)


class StateTopicsFollower:
    def __init__(self, settings: Settings, metrics: Metrics, *, clock: WallClock = utc_now) -> None:
        self.cancels = CancelIndex(retention_s=settings.control_retention_s, clock=clock)
        self.attempts = StartCounts()
        self._control_topic = settings.control_topic
        self._topics = (settings.control_topic, settings.attempts_topic)
        self._metrics = metrics
        self._consumer = AIOKafkaConsumer(
            **client_options(settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )
        self._partitions: list[TopicPartition] = []
        self._listeners: list[Callable[[CancelCommand], None]] = []
        self._barriers: list[_Barrier] = []
        self._task: asyncio.Task[None] | None = None

    def on_cancel(self, listener: Callable[[CancelCommand], None]) -> None:
        """Call `listener` with each cancel command new to the index, on the event loop."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Assign every partition of both topics, from the start. Raises when a topic does not exist."""
        consumer = self._consumer
        await consumer.start()
        try:
            await consumer.topics()  # metadata of every topic
            self._partitions = [tp for topic in self._topics for tp in _partitions(consumer, topic)]
            consumer.assign(self._partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._follow(), name="control-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for barrier in self._barriers:
            barrier.done.cancel()
        await self._consumer.stop()

    async def caught_up(self) -> None:
        """Until both topics are read up to where they ended when this was called."""
        barrier = _Barrier(int(time.time() * 1000), asyncio.get_running_loop().create_future())
        self._barriers.append(barrier)
        await asyncio.shield(barrier.done)

    async def _follow(self) -> None:
        next_prune = time.monotonic() + _PRUNE_EVERY_S
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=_POLL_MS)
                for records in batch.values():
                    for record in records:
                        self._apply(record)
                await self._check_barriers()
            except KafkaError as exc:  # the consumer reconnects by itself; keep following
                log.warning("reading %s failed: %r", "/".join(self._topics), exc)
                await asyncio.sleep(_ERROR_BACKOFF_S)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + _PRUNE_EVERY_S
                self.cancels.prune()

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.topic != self._control_topic:
            self.attempts.apply(record.key, record.value)
            return
        logged_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        update = self.cancels.apply(record.key, record.value, logged_at=logged_at)
        if isinstance(update, IgnoredCommand):
            self._metrics.control_ignored.labels(reason=update.reason).inc()
        elif update is not None:
            for listener in self._listeners:
                listener(update)

    async def _check_barriers(self) -> None:
        if not self._barriers:
            return
        consumer = self._consumer
        for barrier in self._barriers:
            for tp in self._partitions:
                polled = consumer.last_poll_timestamp(tp)
                if polled is None or polled <= barrier.since_ms or tp in barrier.targets:
                    continue
                if tp not in barrier.answered:
                    barrier.answered[tp] = polled
                elif polled > barrier.answered[tp]:
                    barrier.targets[tp] = consumer.highwater(tp)
            if len(barrier.targets) == len(self._partitions) and await self._reached(barrier.targets):
                barrier.done.set_result(None)
        self._barriers = [barrier for barrier in self._barriers if not barrier.done.done()]

    async def _reached(self, targets: dict[TopicPartition, int]) -> bool:
        for tp, end in targets.items():
            if await self._consumer.position(tp) < end:
                return False
        return True


def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        message = f"topic {topic} does not exist: create it (compacted) or set VIDGEN_CREATE_TOPICS=true"
        raise VidgenError(message, code="topic_missing")
    return [TopicPartition(topic, partition) for partition in sorted(found)]
