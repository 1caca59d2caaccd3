"""Waiting for one request's result on video.results, with progress from the optional video.progress topic.

A watcher either starts at the topics' ends (`vidgen submit --wait`: it is positioned before the request is
published, so the result cannot slip past) or first looks up the result that already exists (`vidgen watch`): it
reads the one partition of the results topic the request id's key hashes to (the default partitioner, murmur2 as
aiokafka and the Java client compute it; workers key results by request id) from its earliest retained offset up to
the end it had when the watch began, and answers with the latest result found there, else goes on following.
Progress records are keyed by request_id and hold `{"request_id": ..., "step": n, "total": m}`; without the topic
the bar is a spinner with the elapsed time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner
from pydantic import ValidationError

from consumer.kafka.clients import client_options
from consumer.settings import Settings
from producer_examples.command_line import EXIT_COMPLETED, EXIT_FAILED, EXIT_TIMEOUT
from schemas.events import VideoResult

__all__ = ["ResultWatcher", "render_progress", "report_result"]

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
    """A group-less reader of the results (and progress) topics, positioned at their ends by `start()`; with
    `existing`, the results partition of the request id's key is read from its beginning first."""

    def __init__(
        self, settings: Settings, request_id: str, *, progress_topic: str | None, existing: bool = False
    ) -> None:
        self._results_topic = settings.results_topic
        self._progress_topic = progress_topic
        self._key = request_id.encode("utf-8")
        # A short fetch wait: brokers such as tansu answer an empty fetch only when it expires.
        self._consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, fetch_max_wait_ms=100)
        self._existing = existing
        self._history: tuple[TopicPartition, int] | None = None  # the partition read from the start, and its end
        self._found: VideoResult | None = None  # the latest result in that history so far
        self._step: int | None = None
        self._total: int | None = None

    async def start(self) -> None:
        """Positions the reader. Stop it with `stop()` even when this raises."""
        consumer = self._consumer
        await consumer.start()
        results = sorted(consumer.partitions_for_topic(self._results_topic) or ())
        if not results:
            raise UnknownTopicOrPartitionError(
                f"topic {self._results_topic} does not exist (VIDGEN_RESULTS_TOPIC; workers create it when they start)"
            )
        topics = [self._results_topic]
        if self._progress_topic and consumer.partitions_for_topic(self._progress_topic):
            topics.append(self._progress_topic)
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve the end offsets now, before the request is published
        if self._existing:
            history = TopicPartition(self._results_topic, DefaultPartitioner()(self._key, results, results))
            self._history = (history, await consumer.position(history))
            await consumer.seek_to_beginning(history)

    async def stop(self) -> None:
        # aiokafka's group-less coordinator starts a task in start(); stopping before that task first ran lets
        # its cancellation escape stop(). One turn of the loop lets it run.
        await asyncio.sleep(0)
        await self._consumer.stop()

    async def wait(self, *, timeout_s: float, on_tick: Tick | None = None) -> VideoResult | None:
        """The latest result keyed by the request id that existed when the watch began (with `existing`), else the
        first one published since, or None after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            batch = await self._consumer.getmany(timeout_ms=int(min(0.25, left) * 1000))
            for records in batch.values():
                for record in records:
                    result = self._read(record)
                    if result is None:
                        continue
                    if self._history is None or not _within(record, self._history):
                        return result
                    self._found = result  # a later answer to the same request id replaces it
            if self._history is not None and await self._consumer.position(self._history[0]) >= self._history[1]:
                self._history = None  # everything published before the watch began has been read
                if self._found is not None:
                    return self._found
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


def _within(record: ConsumerRecord[bytes, bytes], history: tuple[TopicPartition, int]) -> bool:
    """Whether `record` was published before the watch began, in the partition it reads from the start."""
    partition, end = history
    return (record.topic, record.partition) == (partition.topic, partition.partition) and record.offset < end


async def report_result(watcher: ResultWatcher, request_id: str, *, timeout_s: float, prog: str) -> int:
    """Wait for the result with a progress bar on stderr, print it (JSON on stdout), and answer with its exit code:
    0 completed, 1 failed or rejected, 2 none within `timeout_s`."""
    bar = _Bar(sys.stderr)
    result = await watcher.wait(timeout_s=timeout_s, on_tick=bar.draw)
    bar.close()
    if result is None:
        print(f"{prog}: no result for {request_id} within {timeout_s:g}s", file=sys.stderr)
        return EXIT_TIMEOUT
    print(result.model_dump_json(indent=2))
    return EXIT_COMPLETED if result.status == "completed" else EXIT_FAILED


class _Bar:
    """Redraws one line on a terminal; stays silent when stderr is a file or a pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._started = time.monotonic()
        self._ticks = 0

    def draw(self, step: int | None, total: int | None) -> None:
        if self._live:
            self._ticks += 1
            line = render_progress(step, total, elapsed_s=time.monotonic() - self._started, tick=self._ticks)
            self._stream.write("\r" + line)
            self._stream.flush()

    def close(self) -> None:
        if self._live:
            self._stream.write("\n")
            self._stream.flush()
