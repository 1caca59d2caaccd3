"""The consume loop's decisions, without a broker: the real `ConsumeLoop`, scheduler and job runner, with a fake
consumer handed in through the consumer factory and a fake pipeline and publisher. Tests end when the worker does (burst
mode: it returns once everything fetched is answered) or on a condition of the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from consumer.errors import StorageError
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.consume_loop import ConsumeLoop
from consumer.worker.job_runner import JobRunner
from consumer.worker.scheduler import JobScheduler
from tests.support import IDENTITY, FakeConsumer, FakePipeline, FakePublisher, condition, consumed, request_body

REQUESTS = TopicPartition("video.requests", 0)
RETRY = TopicPartition("video.requests.retry", 0)
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Loop:
    worker: ConsumeLoop
    publisher: FakePublisher
    pipeline: FakePipeline
    consumers: list[FakeConsumer]
    clock: list[datetime]

    @property
    def consumer(self) -> FakeConsumer:
        """The consumer, once the worker built it (an empty one before)."""
        return self.consumers[0] if self.consumers else FakeConsumer(None, {})

    async def burst(self) -> None:
        await asyncio.wait_for(self.worker.run(asyncio.Event(), burst=True), 10)


def _loop(
    records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    *,
    pipeline: FakePipeline | None = None,
    memory: Any = None,
    publisher: FakePublisher | None = None,
    **overrides: Any,
) -> Loop:
    settings = Settings(retry_backoff_s=0.001, shutdown_grace_s=5, **overrides)
    metrics = Metrics()
    pipeline = pipeline or FakePipeline()
    publisher = publisher or FakePublisher()
    consumers: list[FakeConsumer] = []
    clock = [START]

    def factory(listener: Any) -> FakeConsumer:
        consumers.append(FakeConsumer(listener, records))
        return consumers[-1]

    runner = JobRunner(
        settings=settings,
        publisher=publisher,  # type: ignore[arg-type]
        pipeline=pipeline,  # type: ignore[arg-type]
        identity=IDENTITY,
        metrics=metrics,
        clock=lambda: clock[0],
    )
    worker = ConsumeLoop(
        settings=settings,
        consumer_factory=factory,  # type: ignore[arg-type]
        scheduler=JobScheduler(settings, runner, metrics, events=asyncio.Queue()),
        metrics=metrics,
        memory=memory,
        clock=lambda: clock[0],
    )
    return Loop(worker, publisher, pipeline, consumers, clock)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Loop], Loop]]:
    """Runs a worker in the background until the test ends."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def run(loop: Loop) -> Loop:
        tasks.append(asyncio.create_task(loop.worker.run(stop)))
        return loop

    yield run
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


def _requests(*ids: str, partition: TopicPartition = REQUESTS, first: int = 0, **headers: bytes) -> list[Any]:
    return [
        consumed(
            partition.topic, partition.partition, first + index, request_body(rid, prompt=rid), headers=headers.items()
        )
        for index, rid in enumerate(ids)
    ]


async def test_burst_answers_every_record_commits_to_the_end_and_returns() -> None:
    records = [*_requests("r0", "r1"), consumed(REQUESTS.topic, 0, 2, b"not json"), *_requests("r3", first=3)]
    loop = _loop({REQUESTS: records})
    await loop.burst()
    assert sorted(result.request_id for result in loop.publisher.results) == ["r0", "r1", "r3"]
    assert {result.status for result in loop.publisher.results} == {"completed"}
    assert [code for _, code in loop.publisher.dead_letters] == ["not_json"]
    assert loop.consumer.committed() == {REQUESTS: 4}
    assert loop.consumer.stopped


async def test_a_commit_never_passes_a_record_still_in_flight(running: Callable[[Loop], Loop]) -> None:
    pipeline = FakePipeline()
    pipeline.release["r0"] = asyncio.Event()  # the first request stays in flight
    loop = running(_loop({REQUESTS: _requests("r0", "r1", "r2")}, pipeline=pipeline, max_inflight_jobs=3))
    await condition(lambda: len(loop.publisher.results) == 2)  # r1 and r2 answered
    assert REQUESTS not in loop.consumer.committed()
    pipeline.release["r0"].set()
    await condition(lambda: loop.consumer.committed().get(REQUESTS) == 3)


async def test_a_retry_not_yet_due_holds_its_partition_until_it_is(running: Callable[[Loop], Loop]) -> None:
    due = START + timedelta(seconds=30)
    headers = {"vidgen-attempt": b"4", "vidgen-retry-round": b"1", "vidgen-not-before-ms": _ms(due)}
    loop = running(_loop({RETRY: _requests("later", partition=RETRY, **headers)}, retry_topic=RETRY.topic))
    await condition(lambda: RETRY in loop.consumer.fetched and RETRY in loop.consumer.paused())
    assert loop.pipeline.attempts == []
    assert loop.consumer.positions[RETRY] == 0  # rewound to the held record
    loop.clock[0] = due
    await condition(lambda: len(loop.publisher.results) == 1)
    assert loop.pipeline.attempts == [("later", 4)]  # the attempt its headers carried


async def test_retry_state_is_honoured_only_on_the_retry_topic() -> None:
    """Only workers write the retry topic. On video.requests the same headers are whatever a client sent: a forged
    round must not skip the retry topic, a forged attempt must not show up in the result, a forged not-before must
    not hold the partition."""
    forged = {"vidgen-attempt": b"7", "vidgen-retry-round": b"9", "vidgen-not-before-ms": _ms(START + timedelta(1))}
    pipeline = FakePipeline({"r0": [StorageError("S3 said 503")]})
    loop = _loop({REQUESTS: _requests("r0", **forged)}, pipeline=pipeline, retry_attempts=1, retry_topic_rounds=2)
    await loop.burst()
    assert pipeline.attempts == [("r0", 1)]
    assert loop.publisher.results == loop.publisher.dead_letters == []
    [(_, headers)] = loop.publisher.retries  # handed to the retry topic as a first round, not failed for good
    assert (dict(headers)["vidgen-attempt"], dict(headers)["vidgen-retry-round"]) == (b"2", b"1")
    assert loop.consumer.committed() == {REQUESTS: 1}


async def test_while_a_job_waits_for_memory_nothing_is_fetched(running: Callable[[Loop], Loop]) -> None:
    memory = SimpleNamespace(waiting=True)
    loop = running(_loop({REQUESTS: _requests("r0", "r1")}, memory=memory))
    await condition(lambda: loop.consumer.paused() == {REQUESTS})
    assert loop.consumer.positions[REQUESTS] == 0 and loop.pipeline.attempts == []
    memory.waiting = False
    await condition(lambda: len(loop.publisher.results) == 2)


async def test_a_job_that_dies_outside_the_result_path_stops_the_worker() -> None:
    class Broken(FakePublisher):
        async def result(self, result: Any) -> None:
            raise RuntimeError("publisher bug")

    loop = _loop({REQUESTS: _requests("r0", "r1")}, publisher=Broken())
    with pytest.raises(RuntimeError, match="crashed outside the result path"):
        await loop.burst()
    assert loop.consumer.committed() == {} and loop.consumer.stopped


def _ms(moment: datetime) -> bytes:
    return str(int(moment.timestamp() * 1000)).encode()
