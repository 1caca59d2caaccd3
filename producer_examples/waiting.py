"""Waiting for one request's result on video.results, with progress from the optional video.progress topic.

Progress records (when some deployment publishes them) are keyed by request_id and hold
`{"request_id": ..., "step": n, "total": m}`; without the topic the bar is a spinner with the elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError
from pydantic import ValidationError

from consumer.kafka.clients import client_options
from consumer.settings import Settings
from schemas.events import VideoResult

__all__ = ["ResultWatcher", "render_progress"]

log = logging.getLogger(__name__)

_SPINNER = "|/-\\"
_WIDTH = 24

Tick = Callable[[int | None, int | None], None]


def render_progress(step: int | None, total: int | None, *, elapsed_s: float, tick: int) -> str:
    """One line: a bar when step and total are known, else a spinner; always the elapsed time."""
    if step is not None and total:
        done = min(_WIDTH, _WIDTH * step // total)
        return f"[{'#' * done}{'.' * (_WIDTH - done)}] step {step}/{total}  {elapsed_s:5.1f}s"
    return f"{_SPINNER[tick % len(_SPINNER)]} waiting for the result  {elapsed_s:5.1f}s"


class ResultWatcher:
    """A group-less reader of the results (and progress) topics, positioned at their ends by `start()`."""

    def __init__(self, settings: Settings, request_id: str, *, progress_topic: str | None) -> None:
        self._results_topic = settings.results_topic
        self._progress_topic = progress_topic
        self._key = request_id.encode("utf-8")
        self._consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        self._step: int | None = None
        self._total: int | None = None

    async def start(self) -> None:
        consumer = self._consumer
        await consumer.start()
        if not consumer.partitions_for_topic(self._results_topic):
            raise UnknownTopicOrPartitionError(f"topic {self._results_topic} does not exist")
        topics = [self._results_topic]
        if self._progress_topic and consumer.partitions_for_topic(self._progress_topic):
            topics.append(self._progress_topic)
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve the end offsets now, before the request is published

    async def stop(self) -> None:
        # aiokafka's group-less coordinator starts a task in start(); stopping before that task first ran lets
        # its cancellation escape stop(). One turn of the loop lets it run.
        await asyncio.sleep(0)
        await self._consumer.stop()

    async def wait(self, *, timeout_s: float, on_tick: Tick | None = None) -> VideoResult | None:
        """The first result keyed by the request id, or None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            batch = await self._consumer.getmany(timeout_ms=int(min(0.25, left) * 1000))
            for records in batch.values():
                for record in records:
                    result = self._read(record)
                    if result is not None:
                        return result
            if on_tick is not None:
                on_tick(self._step, self._total)
        return None

    def _read(self, record: ConsumerRecord[bytes, bytes]) -> VideoResult | None:
        if record.key != self._key:
            return None
        if record.topic == self._results_topic:
            try:
                return VideoResult.model_validate_json(record.value or b"")
            except ValidationError as exc:
                log.warning("result for %s does not match the v1 contract: %s", self._key.decode(), exc)
                return None
        try:
            event = json.loads(record.value or b"")
            self._step, self._total = int(event["step"]), int(event["total"])
        except (ValueError, KeyError, TypeError):
            log.debug("ignoring a progress record that is not {step, total}")
        return None
