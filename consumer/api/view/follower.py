"""The view: every partition of the six topics, read without a consumer group (so every replica sees every job),
decoded into job events and applied to the store with the offsets they came from. Requests come from both lanes
(`video.requests`, `video.requests.bulk`) and the template pool's topic, whose jobs are degraded; the API and the
hook name why in the `vidgen-degraded-reason` header (on a result the API published itself, a similar video, too). A
request the API published with an uploaded start image carries the image's print (`vidgen-image-print`), which
indexes its video once completed (`similar_index`); every request the API published carries the job's fallback choice
(`vidgen-fallback`), which the job object shows (only the three known values are read; nothing is decided by it).

A request's model is the one its `vidgen-model` header names (the API sets it), else the one whose topic it came
from; a request the hook degraded to the template pool asked for the default model.

Listeners (the event streams) are woken when a job they watch changes, or the queue their queued job waits in moves;
nothing polls the store. Once the view has caught up, the jobs each batch changed also go to `on_changed` (the
deletion of a late video of a deleted job).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumer.api.api_metrics import ApiMetrics
from consumer.api.view.database import Partition
from consumer.api.view.job_state import Answered, CancelRequested, Event, JobState, Progressed, Submitted
from consumer.api.view.job_store import JobStore
from consumer.api.view.listeners import Listeners
from consumer.core.degrade import DEGRADED_REASON_HEADER, FALLBACK_HEADER, degraded_reason_of, fallback_of
from consumer.core.intake import parse_request
from consumer.core.similar import PRINT_HEADER, ImagePrint
from consumer.core.video_models import MODEL_HEADER, ModelRegistry
from consumer.kafka.clients import follower_consumer
from consumer.settings import Settings
from schemas.events import VideoControl, VideoProgress, VideoRequest, VideoResult

__all__ = ["ViewFollower", "view_topics"]

log = logging.getLogger(__name__)

_FETCH_WAIT_MS = 100  # tansu answers a fetch only when the wait expires: keep it short for fresh answers
_BATCH = 500
_PURGE_EVERY_S = 60.0
Clock = Callable[[], datetime]
OnChanged = Callable[[Sequence[JobState]], Awaitable[None]]


def view_topics(settings: Settings) -> list[str]:
    return [
        settings.requests_topic,
        settings.bulk_topic,
        settings.template_topic,
        settings.progress_topic,
        settings.results_topic,
        settings.control_topic,
    ]


class ViewFollower:
    """Reads the topics into the store until stopped. `caught_up` turns true once every partition has been read
    up to where it ended when the follower started (readiness waits for it)."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        listeners: Listeners,
        metrics: ApiMetrics,
        *,
        models: ModelRegistry,
        retention_s: float,
        clock: Clock,
        on_changed: OnChanged | None = None,
    ) -> None:
        self._settings = settings
        self._models = models
        self._on_changed = on_changed
        self._store = store
        self._listeners = listeners
        self._metrics = metrics
        self._retention = timedelta(seconds=retention_s)
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._targets: dict[TopicPartition, int] = {}
        self.caught_up = False

    async def start(self) -> None:
        consumer = follower_consumer(
            self._settings,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            max_partition_fetch_bytes=max(self._settings.max_record_bytes * 2, self._settings.max_event_bytes),
        )
        await consumer.start()
        try:
            partitions = await self._partitions(consumer)
            consumer.assign(partitions)
            stored = await self._store.offsets()
            for partition in partitions:
                offset = stored.get((partition.topic, partition.partition))
                if offset is None:
                    await consumer.seek_to_beginning(partition)
                else:
                    consumer.seek(partition, offset)
            ends = await consumer.end_offsets(partitions)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._targets = {partition: end for partition, end in ends.items() if end > 0}
        await self._check_caught_up()

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        await consumer.topics()  # refreshes metadata
        partitions: list[TopicPartition] = []
        for topic in view_topics(self._settings):
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                raise KafkaError(f"topic {topic} does not exist; create it or let the API create it")
            partitions.extend(TopicPartition(topic, number) for number in sorted(numbers))
        return partitions

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def check_broker(self) -> str | None:
        if self._consumer is None:
            return "view not started"
        try:
            await asyncio.wait_for(self._consumer.topics(), 3.0)
        except (KafkaError, TimeoutError, OSError) as exc:
            return f"Kafka brokers unreachable: {exc!r}"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("call start() first")
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=_BATCH)
            if batch:
                await self._apply(batch)
            await self._check_caught_up()
            if loop.time() - last_purge >= _PURGE_EVERY_S:
                last_purge = loop.time()
                removed = await self._store.purge(self._clock() - self._retention)
                if removed:
                    log.info("view: %d jobs past retention removed", removed)

    async def _apply(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        events: list[Event] = []
        workers: dict[str, datetime] = {}
        offsets: dict[Partition, int] = {}
        oldest = self._clock() - self._retention
        for partition, records in batch.items():
            for record in records:
                at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                event = self._decode(partition.topic, record, at) if at >= oldest else None
                if event is not None:
                    events.append(event)
                    worker = _worker_of(event)
                    if worker is not None:
                        workers[worker] = max(at, workers.get(worker, at))
                self._metrics.view_records.labels(topic=_topic_label(self._settings, partition.topic)).inc()
            offsets[(partition.topic, partition.partition)] = records[-1].offset + 1
        outcome = await self._store.apply(events, offsets=offsets, workers=workers)
        for reason, count in outcome.ignored.items():
            self._metrics.view_ignored.labels(reason=reason).inc(count)
        self._listeners.notify(outcome)
        if self._on_changed is not None and self.caught_up and outcome.changed:
            await self._on_changed(outcome.changed)

    def _decode(self, topic: str, record: ConsumerRecord[Any, Any], at: datetime) -> Event | None:
        settings = self._settings
        value: bytes | None = record.value
        try:
            if topic in (settings.requests_topic, settings.bulk_topic, settings.template_topic):
                return self._submitted(topic, record, at)
            if value is None:
                return None
            if topic == settings.progress_topic:
                return Progressed(VideoProgress.model_validate_json(value), at)
            if topic == settings.results_topic:
                reason = degraded_reason_of(dict(record.headers).get(DEGRADED_REASON_HEADER))
                return Answered(VideoResult.model_validate_json(value), at, degraded_reason=reason)
            return CancelRequested(VideoControl.model_validate_json(value), at)
        except ValidationError:
            self._metrics.view_ignored.labels(reason="unreadable").inc()
            return None

    def _submitted(self, topic: str, record: ConsumerRecord[Any, Any], at: datetime) -> Submitted | None:
        """A request, from the GPU pool's topic or (degraded, with the reason its header gives) the template's."""
        request = parse_request(record.value, max_bytes=self._settings.max_record_bytes)
        if not isinstance(request, VideoRequest):
            return None  # rejected records get a result from the worker; the job appears with it
        headers = dict(record.headers)
        fallback = fallback_of(headers.get(FALLBACK_HEADER))
        if topic != self._settings.template_topic:
            image = headers.get(PRINT_HEADER)
            image_print = ImagePrint.of_text(image.decode("ascii", "replace")) if image is not None else None
            model = self._model_of(topic, headers, degraded=False)
            image_text = image_print.text if image_print else None
            return Submitted(request, at, model=model, image_print=image_text, fallback=fallback)
        reason = degraded_reason_of(headers.get(DEGRADED_REASON_HEADER))
        model = self._model_of(topic, headers, degraded=reason is not None)
        return Submitted(request, at, degraded=True, degraded_reason=reason, model=model, fallback=fallback)

    def _model_of(self, topic: str, headers: dict[str, bytes], *, degraded: bool) -> str | None:
        named = headers.get(MODEL_HEADER)
        model = self._models.get(named.decode("utf-8", "replace")) if named is not None else None
        if model is None:
            model = self._models.default if degraded else self._models.of_topic(topic)
        return model.id if model is not None else None

    async def _check_caught_up(self) -> None:
        consumer = self._consumer
        if self.caught_up or consumer is None:
            return
        for partition, end in self._targets.items():
            if await consumer.position(partition) < end:
                return
        self.caught_up = True
        log.info("view caught up with the topics")


def _worker_of(event: Event) -> str | None:
    if isinstance(event, Progressed):
        return event.progress.worker_id
    if isinstance(event, Answered) and event.result.similar_to is None:  # not the API's own answer
        return event.result.worker_id
    return None


def _topic_label(settings: Settings, topic: str) -> str:
    names = {
        settings.requests_topic: "requests",
        settings.bulk_topic: "bulk",
        settings.template_topic: "template",
        settings.progress_topic: "progress",
        settings.results_topic: "results",
        settings.control_topic: "control",
    }
    return names.get(topic, "other")
