"""Who starts when: the scheduler reacts to a render ending and to a job ending, without waiting for a fetch; each
job's lifecycle as the scheduler and the runner move it; a render's steps reach the progress listeners through the
scheduler's queue."""

from __future__ import annotations

import asyncio
import contextvars
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
    def __init__(self, *, pipeline: FakePipeline | None = None, progress: Any = (), **overrides: Any) -> None:
        settings = Settings(**overrides)
        self.pipeline = pipeline or FakePipeline()
        self.publisher = FakePublisher()
        runner = JobRunner(
            settings=settings,
            publisher=self.publisher,  # type: ignore[arg-type]
            pipeline=self.pipeline,  # type: ignore[arg-type]
            identity=IDENTITY,
            metrics=Metrics(),
            progress=progress,
        )
        self.scheduler = JobScheduler(settings, runner, Metrics(), events=asyncio.Queue())
        self.offset = 0
        self.jobs: dict[str, Job] = {}

    def queue(self, request_id: str, *, tenant: str = "shop-1", held: bool = True) -> asyncio.Event:
        """Queue a request whose job, once its render ended, waits for the returned event."""
        body = request_body(request_id, tenant_id=tenant)
        record = consumed(TP.topic, TP.partition, self.offset, body)
        self.offset += 1
        release = self.pipeline.release[request_id] = asyncio.Event()
        if not held:
            release.set()
        job = self.jobs[request_id] = Job(TP, record, VideoRequest.model_validate(body), datetime.now(UTC))
        self.scheduler.queue(job)
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


async def test_a_job_goes_through_its_lifecycle_as_the_scheduler_and_runner_move_it(
    schedule: Callable[..., Scheduled],
) -> None:
    jobs = schedule(max_inflight_jobs=1)
    jobs.queue("r0", held=False)
    jobs.queue("r1")
    jobs.scheduler.start_admitted()
    await condition(lambda: jobs.jobs["r0"].lifecycle.phase == "answered" and jobs.started() == ["r0", "r1"])
    # The fake pipeline ends its render at once (as a cache hit would); the scheduler answers it when its task ends.
    assert jobs.jobs["r0"].lifecycle.history == ["queued", "admitted", "started", "render_ended", "answered"]
    jobs.scheduler.drop([TP])  # revoked while r1 finishes: nothing queued is left to abandon
    assert jobs.jobs["r1"].lifecycle.phase == "render_ended"


async def test_queued_jobs_dropped_at_a_revocation_are_abandoned(schedule: Callable[..., Scheduled]) -> None:
    jobs = schedule(max_inflight_jobs=1, max_finishing_jobs=0)  # r1 waits until r0 is answered
    first = jobs.queue("r0")
    jobs.queue("r1")
    jobs.scheduler.start_admitted()
    await condition(lambda: jobs.started() == ["r0"])
    jobs.scheduler.drop([TP])
    assert jobs.jobs["r1"].lifecycle.history == ["queued", "abandoned"]
    first.set()
    await condition(lambda: jobs.jobs["r0"].lifecycle.phase == "answered")


_SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("span")  # stands for the render's trace span


class _StepsPipeline(FakePipeline):
    """Renders two denoising steps, told to its job's track as the real pipeline does, before the fake's answer."""

    async def process(self, request: VideoRequest, *, received_at: datetime, attempt: int = 1, **rest: Any) -> Any:
        track = rest["track"]
        _SPAN.set(f"render {request.request_id}")
        track.rendering()
        for step in (1, 2):
            track.progress(step, 2)
        return await super().process(request, received_at=received_at, attempt=attempt, **rest)


class _Listener:
    def __init__(self) -> None:
        self.heard: list[tuple[str, int, int]] = []

    def started(self, request: VideoRequest, *, attempt: int) -> Callable[[int, int], None]:
        self.heard.append((request.request_id, 0, attempt))
        return lambda step, total: self.heard.append((_SPAN.get("none"), step, total))


async def test_render_steps_reach_the_progress_listeners_through_the_scheduler_queue(
    schedule: Callable[..., Scheduled],
) -> None:
    listener = _Listener()
    jobs = schedule(pipeline=_StepsPipeline(), progress=[listener])
    release = jobs.queue("r0")
    jobs.scheduler.start_admitted()
    await condition(lambda: len(listener.heard) == 3)
    # Announced once, then each step, heard in the context the step ended in (a progress event carries the trace).
    assert listener.heard == [("r0", 0, 1), ("render r0", 1, 2), ("render r0", 2, 2)]
    assert jobs.jobs["r0"].lifecycle.phase == "render_ended"
    release.set()
