"""The worker's view of two small compacted topics: cancel commands and the crash guard's counts.

`StateTopicsFollower` reads every partition of the control topic (cancel commands) and the attempts topic (the crash
guard's counts) from their start, without a consumer group, in a background task, for as long as the worker runs:
commands go into a `CancelIndex` (each new one is also put on the scheduler's event queue), counts into `StartCounts`.
The wiring builds the consumer (`consumer.kafka.clients.make_state_consumer`), the index, the counts and the queue, and
passes them in. `caught_up()` returns once both topics were read as far as they reached when it was called: the consume
loop starts no record of a newly assigned partition before that, so a request another worker died on is known as such,
and a cancel issued before the worker started is applied.

`consumer.crash_guard.ledger.CrashGuardLedger` writes the counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumer.cancellation.commands import CancelCommand, CancelIndex, IgnoredCommand
from consumer.crash_guard.counts import StartCounts
from consumer.errors import VidgenError
from consumer.settings import TopicSettings
from consumer.telemetry.worker_metrics import Metrics

__all__ = ["CommandSink", "StateTopicsFollower"]

log = logging.getLogger(__name__)

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


class CommandSink(Protocol):
    """Where each cancel command new to the index goes: the scheduler's event queue."""

    def put_nowait(self, item: CancelCommand, /) -> None: ...


class StateTopicsFollower:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: TopicSettings,
        metrics: Metrics,
        *,
        cancels: CancelIndex,
        counts: StartCounts,
        commands: CommandSink,
    ) -> None:
        self._consumer = consumer
        self._cancels = cancels
        self._counts = counts
        self._commands = commands
        self._control_topic = topics.control_topic
        self._topics = (topics.control_topic, topics.attempts_topic)
        self._metrics = metrics
        self._partitions: list[TopicPartition] = []
        self._barriers: list[_Barrier] = []
        self._task: asyncio.Task[None] | None = None

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
                self._cancels.prune()

    def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        if record.topic != self._control_topic:
            self._counts.apply(record.key, record.value)
            return
        logged_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        update = self._cancels.apply(record.key, record.value, logged_at=logged_at)
        if isinstance(update, IgnoredCommand):
            self._metrics.control_ignored.labels(reason=update.reason).inc()
        elif update is not None:
            self._commands.put_nowait(update)

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
