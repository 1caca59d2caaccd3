"""The GPU pool as the product hook sees it from outside: its consumer group's offsets on the topics the hook
publishes to. Requests not yet committed are waiting (`lag`, the pool's queue); committed offsets moving means a
worker answered something (`consumer.core.degrade.PoolActivity`). Read every `interval_s` by a consumer that uses
the group's id only to read its commits: it never subscribes, so it never joins the group.

Until the first reading, and while the brokers do not answer, nothing is busy or down: the hook degrades only on
what it has seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.core.degrade import PoolActivity, pool_down
from consumer.kafka.clients import client_options
from consumer.settings import Settings

__all__ = ["PoolWatch", "watching"]

log = logging.getLogger(__name__)


class PoolWatch:
    def __init__(self, consumer: AIOKafkaConsumer, *, topics: list[str], clock: Callable[[], datetime]) -> None:
        self._consumer = consumer
        self._topics = topics
        self._clock = clock
        self.lag: int | None = None  # requests published and not yet answered (committed); None: not read yet
        self.activity = PoolActivity()

    def busy(self, max_queued: int) -> bool:
        return self.lag is not None and self.lag >= max_queued

    def down(self, after_s: float) -> bool:
        activity = self.activity
        return pool_down(
            last_active=activity.last_active, waiting_since=activity.waiting_since, now=self._clock(), after_s=after_s
        )

    async def read(self) -> None:
        """One reading of the group's committed offsets against the topics' ends."""
        consumer = self._consumer
        await consumer.topics()  # refreshes metadata: partitions added since the last reading count too
        partitions = [
            TopicPartition(topic, number)
            for topic in self._topics
            for number in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
        committed = lag = 0
        for partition in partitions:
            done = await consumer.committed(partition)
            position = starts[partition] if done is None else done  # never committed: everything retained waits
            committed += position
            lag += max(0, ends[partition] - position)
        self.lag = lag
        self.activity.observe(committed=committed, waiting=lag, now=self._clock())

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.read()
            except KafkaError as exc:
                log.warning("reading the GPU pool's offsets failed: %r", exc)
            await asyncio.sleep(interval_s)  # a reading every interval: nothing to wake on across processes


@contextlib.asynccontextmanager
async def watching(
    settings: Settings, *, topics: list[str], interval_s: float, clock: Callable[[], datetime]
) -> AsyncIterator[PoolWatch]:
    """A PoolWatch of `settings.consumer_group` (the GPU pool's) reading `topics` every `interval_s` until the block
    ends."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=settings.consumer_group, enable_auto_commit=False)
    await consumer.start()
    watch = PoolWatch(consumer, topics=topics, clock=clock)
    task = asyncio.create_task(watch.run(interval_s))
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
