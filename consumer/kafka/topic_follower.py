"""Following whole topics: every partition read from the beginning without a consumer group (every replica sees
every record, nothing is committed), each record handed to an `apply` callback, then followed. `caught_up` turns true
once each partition has been read up to where it ended at start-up. Used by the webhook endpoints' directory and the
product hook's index of product videos."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from consumer.kafka.clients import follower_consumer
from consumer.settings import Settings

__all__ = ["Apply", "TopicFollower"]

log = logging.getLogger(__name__)

_FETCH_WAIT_MS = 100  # tansu answers a fetch only when its wait expires: short, so a new record shows up fast
Apply = Callable[[ConsumerRecord[bytes, bytes]], None]


class TopicFollower:
    def __init__(self, settings: Settings, topics: list[str], apply: Apply, *, name: str) -> None:
        self._settings = settings
        self._topics = topics
        self._apply = apply
        self._name = name  # what is read, for the log line once caught up
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[TopicPartition, int] = {}
        self.ready = asyncio.Event()  # set once caught up

    @property
    def caught_up(self) -> bool:
        return self.ready.is_set()

    async def start(self) -> None:
        consumer = follower_consumer(self._settings, fetch_max_wait_ms=_FETCH_WAIT_MS)
        await consumer.start()
        try:
            await consumer.topics()  # refreshes metadata
            partitions = [tp for topic in self._topics for tp in _partitions(consumer, topic)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self._ends = {tp: end for tp, end in (await consumer.end_offsets(partitions)).items() if end > 0}
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        await self._check_caught_up()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self, stop: asyncio.Event) -> None:
        """Apply records until `stop` is set."""
        while not stop.is_set():
            await self._step()

    async def catch_up(self) -> None:
        """Apply records until every partition is read to where it ended at start-up."""
        while not self.caught_up:
            await self._step()

    async def _step(self) -> None:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("call start() first")
        batch = await consumer.getmany(timeout_ms=200, max_records=500)
        for records in batch.values():
            for record in records:
                self._apply(record)
        await self._check_caught_up()

    async def _check_caught_up(self) -> None:
        if self.caught_up or self._consumer is None:
            return
        for partition, end in self._ends.items():
            if await self._consumer.position(partition) < end:
                return
        self.ready.set()
        log.info("%s read to the end", self._name)


def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise KafkaError(f"topic {topic} does not exist; create it or let the API create it")
    return [TopicPartition(topic, number) for number in sorted(numbers)]
