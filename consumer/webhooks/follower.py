"""Keeps an `EndpointDirectory` in step with the compacted webhooks topic: every partition read from the beginning
without a consumer group (every API replica and every notifier sees every endpoint), then followed. `caught_up`
turns true once each partition has been read up to where it ended at start-up; until then the API answers 503 on
`/v1/webhooks` and its readiness says so."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.kafka.clients import follower_consumer
from consumer.settings import Settings
from consumer.webhooks.directory import EndpointDirectory

__all__ = ["DirectoryFollower"]

log = logging.getLogger(__name__)

_FETCH_WAIT_MS = 100  # tansu answers a fetch only when its wait expires: short, so a new endpoint shows up fast


class DirectoryFollower:
    def __init__(self, settings: Settings, directory: EndpointDirectory) -> None:
        self._settings = settings
        self._directory = directory
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
            partitions = await _partitions(consumer, self._settings.webhooks_topic)
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
                self._directory.apply(record.key, record.value)
        await self._check_caught_up()

    async def _check_caught_up(self) -> None:
        if self.caught_up or self._consumer is None:
            return
        for partition, end in self._ends.items():
            if await self._consumer.position(partition) < end:
                return
        self.ready.set()
        log.info("webhook endpoints read: %d", len(self._directory))


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()  # refreshes metadata
    numbers = consumer.partitions_for_topic(topic)
    if not numbers:
        raise KafkaError(f"topic {topic} does not exist; create it (compacted) or let the API create it")
    return [TopicPartition(topic, number) for number in sorted(numbers)]
