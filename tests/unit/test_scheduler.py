"""Who starts when: the scheduler reacts to a render ending and to a job ending, without waiting for a fetch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumer.core.job import Job
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.job_runner import JobRunner
from consumer.worker.scheduler import JobScheduler
from schemas.events import VideoRequest
from tests.support import IDENTITY, FakePipeline, FakePublisher, condition, consumed, request_body

TP = TopicPartition("video.requests", 0)


class Scheduled:
    def __init__(self, **overrides: Any) -> None:
        settings = Settings(**overrides)
        self.pipeline = FakePipeline()
        self.publisher = FakePublisher()
        runner = JobRunner(
            settings=settings,
            publisher=self.publisher,  # type: ignore[arg-type]
            pipeline=self.pipeline,  # type: ignore[arg-type]
            identity=IDENTITY,
            metrics=Metrics(),
        )
        self.scheduler = JobScheduler(settings, runner, Metrics(), events=asyncio.Queue())
        self.offset = 0

    def queue(self, request_id: str, *, tenant: str = "shop-1", held: bool = True) -> asyncio.Event:
        """Queue a request whose job, once its render ended, waits for the returned event."""
        body = request_body(request_id, tenant_id=tenant)
        record = consumed(TP.topic, TP.partition, self.offset, body)
        self.offset += 1
        release = self.pipeline.release[request_id] = asyncio.Event()
        if not held:
            release.set()
        self.scheduler.queue(Job(TP, record, VideoRequest.model_validate(body), datetime.now(UTC)))
        return release

    def started(self) -> list[str]:
        return [request_id for request_id, _ in self.pipeline.attempts]


@pytest.fixture
async def schedule() -> AsyncIterator[Callable[..., Scheduled]]:
    """Schedulers whose reaction task runs until the test ends."""
    made: list[Scheduled] = []
    tasks: list[asyncio.Task[None]] = []

    def make(**overrides: Any) -> Scheduled:
        made.append(Scheduled(**overrides))
        tasks.append(asyncio.create_task(made[-1].scheduler.react()))
        return made[-1]

    yield make
    for jobs in made:  # every job answered before the loop moves on
        for release in jobs.pipeline.release.values():
            release.set()
        await condition(lambda jobs=jobs: jobs.scheduler.idle)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_render_that_ends_starts_the_next_job_at_once(schedule: Callable[..., Scheduled]) -> None:
    jobs = schedule(max_inflight_jobs=1, max_finishing_jobs=4)
    first = jobs.queue("r0")
    jobs.queue("r1")
    jobs.scheduler.start_admitted()  # as after a fetch; nothing calls it again below
    # r0's render ends while r0 is still finishing: the render slot goes to r1 at once, not at the next fetch.
    await condition(lambda: jobs.started() == ["r0", "r1"])
    assert not first.is_set()


async def test_without_a_finishing_stage_the_next_job_waits_for_the_answer(schedule: Callable[..., Scheduled]) -> None:
    jobs = schedule(max_inflight_jobs=1, max_finishing_jobs=0)
    first = jobs.queue("r0")
    jobs.queue("r1", held=False)
    jobs.scheduler.start_admitted()
    await condition(lambda: jobs.started() == ["r0"] and jobs.scheduler._events.empty())
    assert jobs.started() == ["r0"]  # the render end was seen, and changed nothing
    first.set()  # r0 answered: its task ends and frees the slot
    await condition(lambda: jobs.started() == ["r0", "r1"])
    await condition(lambda: jobs.scheduler.idle)
    assert jobs.scheduler.offsets.take_committable() == {TP: 2}


async def test_the_end_of_a_job_frees_its_tenants_quota_for_the_next(schedule: Callable[..., Scheduled]) -> None:
    jobs = schedule(tenant_max_inflight=1, max_inflight_jobs=2)
    first = jobs.queue("a0", tenant="a")
    jobs.queue("a1", tenant="a", held=False)
    jobs.queue("b0", tenant="b", held=False)
    jobs.scheduler.start_admitted()
    await condition(lambda: jobs.started() == ["a0", "b0"])  # tenant a waits for its one slot
    first.set()
    await condition(lambda: jobs.started() == ["a0", "b0", "a1"])
    await condition(lambda: len(jobs.publisher.results) == 3)


class _WaitingGate:
    """A memory gate that never finds room: `admit` waits until its `stop` says to give up."""

    waiting = True

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def admit(self, request: VideoRequest, *, stop: Callable[[], bool]) -> None:
        self.asked.append(request.request_id)
        await condition(stop, timeout_s=60)  # as the real gate, which looks again while it waits

    def release(self, request: VideoRequest) -> None:
        pass


async def test_a_shutdown_lets_a_job_waiting_for_memory_give_up_unanswered() -> None:
    settings = Settings()
    gate, publisher = _WaitingGate(), FakePublisher()
    runner = JobRunner(
        settings=settings,
        publisher=publisher,  # type: ignore[arg-type]
        pipeline=FakePipeline(),  # type: ignore[arg-type]
        identity=IDENTITY,
        metrics=Metrics(),
        memory=gate,  # type: ignore[arg-type]
    )
    scheduler = JobScheduler(settings, runner, Metrics(), events=asyncio.Queue())
    body = request_body("r0")
    scheduler.queue(
        Job(TP, consumed(TP.topic, TP.partition, 0, body), VideoRequest.model_validate(body), datetime.now(UTC))
    )
    scheduler.start_admitted()
    await condition(lambda: gate.asked == ["r0"])
    scheduler.stop_accepting()
    await condition(lambda: scheduler.idle)
    assert publisher.results == [] and scheduler.offsets.take_committable() == {}  # read again by the next owner
