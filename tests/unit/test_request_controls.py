"""What cancels, deadlines and the crash guard do to jobs, without a broker: the real scheduler and job runner with a
fake pipeline that renders until released (and stops, as the renderer does, when its job is asked to), a fake
publisher and a fake record of starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumer.cancellation.commands import CancelCommand, CancelIndex
from consumer.core.job import Job, Record, StopSignal
from consumer.core.job_events import JobTrack
from consumer.core.lifecycle import Phase
from consumer.core.results import completed, failed, not_started
from consumer.errors import VidgenError
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker import job_runner as runner_module
from consumer.worker.job_runner import JobRunner
from consumer.worker.scheduler import JobScheduler, SchedulerEvent
from schemas.events import VideoRequest, VideoResult
from tests.support import IDENTITY, FakePublisher, condition, consumed, request_body, video_info

TP = TopicPartition("video.requests", 0)


class RenderingPipeline:
    """Each job "renders" until `release[request_id]` is set, then (past its render) finishes once `finish` is set.
    A stop requested while it renders ends it as the renderer would: the stop's reason, as a failed result."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.finish: dict[str, asyncio.Event] = {}
        self._open = False

    def open(self) -> None:
        """Let every job through, now and from now on."""
        self._open = True
        for event in [*self.release.values(), *self.finish.values()]:
            event.set()

    def _gate(self, gates: dict[str, asyncio.Event], request_id: str) -> asyncio.Event:
        gate = gates.setdefault(request_id, asyncio.Event())
        if self._open:
            gate.set()
        return gate

    async def process(
        self, request: VideoRequest, *, received_at: datetime, attempt: int = 1, **rest: Any
    ) -> VideoResult:
        stop: StopSignal = rest["stop"]
        track: JobTrack = rest["track"]
        self.started.append(request.request_id)
        timings = not_started(received_at)
        released = asyncio.ensure_future(self._gate(self.release, request.request_id).wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait((released, stopping), return_when=asyncio.FIRST_COMPLETED)
        released.cancel()
        stopping.cancel()
        try:
            stop.check("rendering")
        except VidgenError as exc:
            return failed(request, exc, timings=timings, attempt=attempt, identity=IDENTITY)
        track.render_ended()
        await self._gate(self.finish, request.request_id).wait()
        video = video_info()
        return completed(request, video=video, cache_hit=False, timings=timings, attempt=attempt, identity=IDENTITY)


class FakeStarts:
    """A `StartLog`: the deaths already counted per offset, and every write in order."""

    def __init__(self, deaths: dict[int, int] | None = None) -> None:
        self.deaths = deaths or {}
        self.writes: list[tuple[str, int]] = []

    def previous(self, record: Record) -> int:
        return self.deaths.get(record.offset, 0)

    async def started(self, record: Record) -> None:
        self.writes.append(("started", record.offset))

    async def answered(self, record: Record) -> None:
        self.writes.append(("answered", record.offset))

    async def abandoned(self, record: Record) -> None:
        self.writes.append(("abandoned", record.offset))


class Controlled:
    def __init__(self, *, deaths: dict[int, int] | None = None, now: datetime | None = None, **overrides: Any) -> None:
        settings = Settings(**overrides)
        self.pipeline = RenderingPipeline()
        self.publisher = FakePublisher()
        self.starts = FakeStarts(deaths)
        self.metrics = Metrics()
        self.cancels = CancelIndex(retention_s=3600, clock=lambda: datetime.now(UTC))
        self.runner = JobRunner(
            settings=settings,
            publisher=self.publisher,  # type: ignore[arg-type]
            pipeline=self.pipeline,  # type: ignore[arg-type]
            identity=IDENTITY,
            metrics=self.metrics,
            starts=self.starts,
            clock=(lambda: now) if now is not None else lambda: datetime.now(UTC),
        )
        self.events: asyncio.Queue[SchedulerEvent] = asyncio.Queue()
        self.scheduler = JobScheduler(settings, self.runner, self.metrics, events=self.events, cancels=self.cancels)
        self.offset = 0

    def job(self, request_id: str, *, tenant: str = "shop-1", **fields: Any) -> Job:
        body = request_body(request_id, tenant_id=tenant, **fields)
        record = consumed(TP.topic, TP.partition, self.offset, body)
        self.offset += 1
        return Job(TP, record, VideoRequest.model_validate(body), datetime.now(UTC))

    def admitted(self, request_id: str) -> Job:
        """A job as the scheduler hands it to the runner once it took a slot."""
        job = self.job(request_id)
        job.lifecycle.advance(Phase.ADMITTED)
        return job

    def queue(self, request_id: str, *, tenant: str = "shop-1", **fields: Any) -> Job:
        job = self.job(request_id, tenant=tenant, **fields)
        self.scheduler.queue(job)
        self.scheduler.start_admitted()
        return job

    def cancel(self, request_id: str, *, tenant: str = "shop-1") -> None:
        at = datetime.now(UTC)
        command = self.cancels.apply(request_id.encode(), _control(request_id, tenant, at), logged_at=at)
        assert isinstance(command, CancelCommand)
        self.events.put_nowait(command)  # as the control topic's follower does

    def result(self, request_id: str) -> VideoResult | None:
        return next((r for r in self.publisher.results if r.request_id == request_id), None)

    def count(self, metric: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(metric, labels)
        return value or 0.0


def _control(request_id: str, tenant: str, at: datetime) -> bytes:
    return (
        f'{{"schema_version": 1, "action": "cancel", "request_id": "{request_id}", "tenant_id": "{tenant}", '
        f'"requested_at": "{at.isoformat()}"}}'
    ).encode()


@pytest.fixture
async def controlled() -> AsyncIterator[Callable[..., Controlled]]:
    made: list[Controlled] = []
    tasks: list[asyncio.Task[None]] = []

    def make(**overrides: Any) -> Controlled:
        made.append(Controlled(**overrides))
        tasks.append(asyncio.create_task(made[-1].scheduler.react()))
        return made[-1]

    yield make
    for jobs in made:  # every job answered before the loop moves on
        jobs.pipeline.open()
        await condition(lambda jobs=jobs: jobs.scheduler.idle)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_queued_job_is_answered_cancelled_at_once_without_starting(
    controlled: Callable[..., Controlled],
) -> None:
    jobs = controlled(max_inflight_jobs=1)
    jobs.queue("r0")
    jobs.queue("r1")  # waits for r0's render slot
    await condition(lambda: jobs.pipeline.started == ["r0"])
    jobs.cancel("r1")
    await condition(lambda: jobs.result("r1") is not None)
    result = jobs.result("r1")
    assert result is not None and result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("cancelled", False)
    assert jobs.pipeline.started == ["r0"] and jobs.result("r0") is None  # r0 still renders
    assert ("started", 1) not in jobs.starts.writes  # never started, so no start recorded
    assert jobs.count("vidgen_cancellations_total", stage="queued") == 1
    await condition(lambda: jobs.scheduler.offsets.in_flight() == 1)  # r1 answered: only r0 is left


async def test_a_rendering_job_stops_and_its_slot_goes_to_the_next_job_before_it_is_answered(
    controlled: Callable[..., Controlled],
) -> None:
    jobs = controlled(max_inflight_jobs=1)
    jobs.queue("r0")
    jobs.queue("r1")
    await condition(lambda: jobs.pipeline.started == ["r0"])
    jobs.cancel("r0")
    await condition(lambda: jobs.pipeline.started == ["r0", "r1"])  # the stopped render freed the slot
    await condition(lambda: jobs.result("r0") is not None)
    result = jobs.result("r0")
    assert result is not None and result.error is not None and result.error.code == "cancelled"
    assert jobs.count("vidgen_cancellations_total", stage="rendering") == 1
    assert jobs.starts.writes[:2] == [("started", 0), ("answered", 0)]  # answered: the start is withdrawn


async def test_a_cancel_after_the_render_leaves_the_job_to_finish(controlled: Callable[..., Controlled]) -> None:
    jobs = controlled()
    job = jobs.queue("r0")
    jobs.pipeline.release.setdefault("r0", asyncio.Event()).set()
    await condition(lambda: "r0" in jobs.pipeline.finish)  # past its render, encoding and uploading
    jobs.cancel("r0")
    await condition(lambda: job.stop.requested)
    jobs.pipeline.finish["r0"].set()
    await condition(lambda: jobs.result("r0") is not None)
    result = jobs.result("r0")
    assert result is not None and result.status == "completed"
    assert jobs.count("vidgen_cancellations_total", stage="late") == 1


async def test_a_cancel_naming_another_tenant_is_ignored_and_counted(controlled: Callable[..., Controlled]) -> None:
    jobs = controlled(max_inflight_jobs=1)
    jobs.queue("r0")
    jobs.queue("r1")
    await condition(lambda: jobs.pipeline.started == ["r0"])
    jobs.cancel("r0", tenant="intruder")
    jobs.cancel("r1", tenant="intruder")
    await condition(lambda: jobs.count("vidgen_control_ignored_total", reason="wrong_tenant") == 2)
    jobs.pipeline.release["r0"].set()
    jobs.pipeline.finish.setdefault("r0", asyncio.Event()).set()
    await condition(lambda: jobs.pipeline.started == ["r0", "r1"])
    jobs.pipeline.release["r1"].set()
    jobs.pipeline.finish.setdefault("r1", asyncio.Event()).set()
    await condition(lambda: jobs.result("r1") is not None)
    assert {r.request_id: r.status for r in jobs.publisher.results} == {"r0": "completed", "r1": "completed"}
    assert jobs.count("vidgen_cancellations_total", stage="queued") == 0


async def test_a_request_whose_cancel_came_first_is_answered_at_intake(controlled: Callable[..., Controlled]) -> None:
    jobs = controlled()
    at = datetime.now(UTC)
    jobs.cancels.apply(b"r0", _control("r0", "shop-1", at), logged_at=at)
    jobs.cancels.apply(b"r0", _control("r0", "intruder", at), logged_at=at)
    jobs.queue("r0")
    await condition(lambda: jobs.result("r0") is not None)
    result = jobs.result("r0")
    assert result is not None and result.error is not None and result.error.code == "cancelled"
    assert jobs.pipeline.started == []
    assert jobs.count("vidgen_control_ignored_total", reason="wrong_tenant") == 1


async def test_a_deadline_passed_before_the_job_starts_answers_expired(controlled: Callable[..., Controlled]) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    jobs = controlled(now=now)
    jobs.queue("r0", deadline=(now - timedelta(seconds=1)).isoformat())
    await condition(lambda: jobs.result("r0") is not None)
    result = jobs.result("r0")
    assert result is not None and result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("expired", False)
    assert jobs.pipeline.started == [] and jobs.starts.writes == []


async def test_a_request_that_took_down_workers_is_refused_and_dead_lettered(
    controlled: Callable[..., Controlled],
) -> None:
    jobs = controlled(deaths={0: 2}, max_worker_crashes=2)
    jobs.queue("poison")
    await condition(lambda: jobs.result("poison") is not None)
    result = jobs.result("poison")
    assert result is not None and result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("worker_crashed", False)
    assert "2 workers died" in result.error.message
    assert [code for _, code in jobs.publisher.dead_letters] == ["worker_crashed"]
    assert jobs.pipeline.started == []
    assert jobs.starts.writes == [("answered", 0)]  # its count is withdrawn: the partition moves on


async def test_a_request_a_worker_died_on_runs_alone(controlled: Callable[..., Controlled]) -> None:
    jobs = controlled(deaths={1: 1}, max_inflight_jobs=2, max_worker_crashes=2)
    jobs.queue("before")
    jobs.queue("suspect")  # waits for `before` to end, though a render slot is free
    jobs.queue("after")  # waits for `suspect` to end
    await condition(lambda: jobs.pipeline.started == ["before"])
    jobs.pipeline.release["before"].set()
    jobs.pipeline.finish.setdefault("before", asyncio.Event()).set()
    await condition(lambda: jobs.pipeline.started == ["before", "suspect"])
    jobs.pipeline.release["suspect"].set()  # its render ends: still nothing starts beside it
    await condition(lambda: "suspect" in jobs.pipeline.finish)
    assert jobs.pipeline.started == ["before", "suspect"]
    jobs.pipeline.finish["suspect"].set()
    await condition(lambda: jobs.pipeline.started == ["before", "suspect", "after"])


async def test_every_start_is_recorded_before_the_work_and_withdrawn_or_taken_back() -> None:
    jobs = Controlled()
    answered = jobs.admitted("r0")
    jobs.pipeline.release["r0"] = asyncio.Event()
    jobs.pipeline.release["r0"].set()
    jobs.pipeline.finish["r0"] = asyncio.Event()
    jobs.pipeline.finish["r0"].set()
    assert await jobs.runner.run(answered, asyncio.Queue())
    given_up = jobs.admitted("r1")
    task = asyncio.create_task(jobs.runner.run(given_up, asyncio.Queue()))
    await condition(lambda: jobs.pipeline.started == ["r0", "r1"])
    task.cancel()  # revoked past the grace, or shut down: a graceful end
    with pytest.raises(asyncio.CancelledError):
        await task
    assert jobs.starts.writes == [("started", 0), ("answered", 0), ("started", 1), ("abandoned", 1)]


class StuckStarts(FakeStarts):
    """Brokers gone: taking a start back never gets its ack."""

    async def abandoned(self, record: Record) -> None:
        await asyncio.Event().wait()


async def test_a_shutdown_during_a_broker_outage_still_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "_GIVE_UP_WRITE_S", 0.05)
    jobs = Controlled()
    jobs.runner._starts = StuckStarts()
    task = asyncio.create_task(jobs.runner.run(jobs.admitted("r0"), asyncio.Queue()))
    await condition(lambda: jobs.pipeline.started == ["r0"])
    task.cancel()  # the drain's grace is over
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
