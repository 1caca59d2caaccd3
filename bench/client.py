"""The request and result side of a benchmark: request bodies, a producer and result collector, and the render
intervals read from the results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.kafka.clients import client_options, ensure_topics, worker_topics
from consumer.settings import Settings
from schemas.events import VideoResult

__all__ = [
    "SMALL",
    "VIDEO_512",
    "Arrival",
    "Client",
    "make_requests",
    "partitions_of",
    "render_intervals",
]

SMALL = {"width": 256, "height": 256, "num_frames": 5}
VIDEO_512 = {"width": 512, "height": 512, "num_frames": 25}
COLLECTOR_FETCH_WAIT_MS = 10
_STEPS = 8  # the stand-in spreads its hold over the steps; the count only sets the progress granularity


def make_requests(
    label: str, count: int, *, video: dict[str, int], steps: int = _STEPS, first: int = 0
) -> list[dict[str, Any]]:
    """Distinct requests (own prompt and seed each), so none is a cache hit of another."""
    tag = uuid.uuid4().hex[:6]
    return [
        {
            "request_id": f"{label}-{tag}-{index:06d}",
            "tenant_id": "bench",
            "prompt": f"benchmark product video {tag} number {index}",
            "seed": index,
            "num_inference_steps": steps,
            "fps": 8,
            **video,
        }
        for index in range(first, first + count)
    ]


@dataclass(frozen=True)
class Arrival:
    request_id: str
    arrived_at: float  # time.time() when the collector saw it
    result: VideoResult

    @property
    def render_started(self) -> float:
        """When the render started (epoch s); a ValueError for a request that was not rendered."""
        started = self.result.timings.render_started_at
        if started is None:
            raise ValueError(f"{self.request_id} was not rendered ({self.result.status})")
        return started.timestamp()


@dataclass
class Client:
    """Producer of requests and collector of results, as an upstream and a downstream service would be."""

    settings: Settings
    sent_at: dict[str, float] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    _producer: AIOKafkaProducer | None = None
    _collector: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Client:
        await ensure_topics(self.settings, worker_topics(self.settings))
        self._producer = AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=False, linger_ms=0
        )
        await self._producer.start()
        # tansu answers a fetch only when its max wait runs out, even when records arrived meanwhile (Apache Kafka
        # answers at once): a short wait keeps that out of the measured latencies.
        consumer = AIOKafkaConsumer(
            **client_options(self.settings), auto_offset_reset="earliest", fetch_max_wait_ms=COLLECTOR_FETCH_WAIT_MS
        )
        await consumer.start()
        try:
            partitions = await partitions_of(consumer, self.settings.results_topic)
            consumer.assign([TopicPartition(self.settings.results_topic, p) for p in partitions])
        except BaseException:
            await consumer.stop()
            await self._producer.stop()
            raise
        self._collector = asyncio.create_task(self._collect(consumer))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        if self._producer is not None:
            await self._producer.stop()

    async def _collect(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for records in batch.values():
                    for record in records:
                        result = VideoResult.model_validate_json(record.value)
                        self.arrivals.append(Arrival(result.request_id, now, result))
                if batch:
                    self._changed.set()
        finally:
            await consumer.stop()

    async def send(
        self,
        bodies: Sequence[dict[str, Any]],
        *,
        round_robin: bool = False,
        topic: str | None = None,
        first_partition: int = 0,
    ) -> None:
        """Produce all at once, to the requests topic unless `topic` says otherwise. With `round_robin`, request i
        goes to partition (first_partition + i) % partitions (an even spread; key hashing would give some workers more
        than others)."""
        if self._producer is None:
            raise RuntimeError("client not started")
        partitions = self.settings.topic_partitions
        futures = []
        for index, body in enumerate(bodies):
            self.sent_at[body["request_id"]] = time.time()
            futures.append(
                await self._producer.send(
                    topic or self.settings.requests_topic,
                    value=json.dumps(body).encode(),
                    key=body["request_id"].encode(),
                    partition=(first_partition + index) % partitions if round_robin else None,
                )
            )
        await asyncio.gather(*futures)

    def answered(self) -> set[str]:
        return {arrival.request_id for arrival in self.arrivals}

    async def wait_for(self, request_ids: Iterable[str], *, timeout_s: float) -> bool:
        """True once every id has a result; False at the timeout."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.answered():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True

    def first_results(self, request_ids: Iterable[str]) -> dict[str, Arrival]:
        """The first result of each id (later ones are duplicates)."""
        wanted = set(request_ids)
        first: dict[str, Arrival] = {}
        for arrival in self.arrivals:
            if arrival.request_id in wanted:
                first.setdefault(arrival.request_id, arrival)
        return first


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, *, timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await consumer.topics()
        if partitions := consumer.partitions_for_topic(topic):
            return set(partitions)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topic {topic} has no partitions after {timeout_s}s")


def render_intervals(arrivals: Iterable[Arrival]) -> dict[str, list[tuple[float, float]]]:
    """Per worker, the (start, end) epoch seconds of each render, from the results' timings."""
    per_worker: dict[str, list[tuple[float, float]]] = {}
    for arrival in arrivals:
        timings = arrival.result.timings
        if timings.render_started_at is None or timings.render_finished_at is None:
            continue
        per_worker.setdefault(arrival.result.worker_id, []).append(
            (timings.render_started_at.timestamp(), timings.render_finished_at.timestamp())
        )
    return per_worker
