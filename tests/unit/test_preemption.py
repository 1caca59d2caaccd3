"""Preemption: a bulk render holding the model pauses at its next step for a waiting interactive job, gives its render
slot back, and resumes once the interactive job has rendered; bounded by a count per render and by the bulk lane's
minimum share. Through the real scheduler, runner and attempts, with a pipeline that holds one model lock and steps
(as the renderer does) and waits at the job's pause gate when asked to pause."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition

from consumer.core.job import Job
from consumer.core.lifecycle import Phase
from consumer.core.preemption import Preemption, PreemptionPolicy
from consumer.core.results import failed, not_started
from consumer.errors import Cancelled, RenderHandedBack, VidgenError
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.job_runner import JobRunner
from consumer.worker.scheduler import JobScheduler
from schemas.events import VideoRequest
from tests.support import IDENTITY, FakePipeline, FakePublisher, condition, consumed, request_body

BULK = TopicPartition("video.requests.bulk", 0)
INTERACTIVE = TopicPartition("video.requests", 0)


class _SteppingPipeline(FakePipeline):
    """Renders `steps` steps under one model lock, each reported to the job's track; asked to pause, it lets go of the
    lock and waits at the job's pause gate, then takes the lock again and goes on from where it was."""

    def __init__(self, steps: int = 40, step_s: float = 0.005) -> None:
        super().__init__()
        self.steps, self.step_s = steps, step_s
        self.model = asyncio.Lock()
        self.rendered: list[str] = []  # in the order the renders ended

    async def process(self, request: VideoRequest, *, received_at: datetime, attempt: int = 1, **rest: Any) -> Any:
        track = rest["track"]
        track.rendering()
        try:
            await self._render(track.job, track, rest["pauses"])
        except RenderHandedBack:
            raise  # as the job pipeline does: the job ends unanswered
        except VidgenError as exc:
            return failed(request, exc, timings=not_started(received_at), attempt=attempt, identity=IDENTITY)
        self.rendered.append(request.request_id)
        return await super().process(request, received_at=received_at, attempt=attempt, **rest)

    async def _render(self, job: Job, track: Any, pauses: Any) -> None:
        step = 0
        while True:
            await job.stop.acquire(self.model)
            try:
                while step < self.steps:
                    await asyncio.sleep(self.step_s)
                    step += 1
                    track.progress(step, self.steps)
                    if job.stop.handing_back:
                        raise RenderHandedBack("handed back")
                    if job.preemption.requested and step < self.steps:
                        break
            finally:
                self.model.release()
            if step == self.steps:
                return
            await pauses.paused()


class _Jobs:
    def __init__(self, pipeline: _SteppingPipeline, **overrides: Any) -> None:
        settings = Settings(**{"max_inflight_jobs": 2, "bulk_topic": BULK.topic, **overrides})
        self.pipeline, self.publisher = pipeline, FakePublisher()
        runner = JobRunner(
            settings=settings,
            publisher=self.publisher,  # type: ignore[arg-type]
            pipeline=pipeline,  # type: ignore[arg-type]
            identity=IDENTITY,
            metrics=Metrics(),
        )
        self.scheduler = JobScheduler(settings, runner, Metrics(), events=asyncio.Queue(), checkpointed=True)
        self.jobs: dict[str, Job] = {}
        self._offsets = {BULK: 0, INTERACTIVE: 0}

    def queue(self, request_id: str, *, bulk: bool) -> Job:
        tp = BULK if bulk else INTERACTIVE
        body = request_body(request_id, **({"priority": "bulk"} if bulk else {}))
        record = consumed(tp.topic, tp.partition, self._offsets[tp], body)
        self._offsets[tp] += 1
        job = self.jobs[request_id] = Job(tp, record, VideoRequest.model_validate(body), datetime.now(UTC))
        self.scheduler.queue(job)
        self.scheduler.start_admitted()
        return job

    def statuses(self) -> dict[str, str]:
        return {result.request_id: result.status for result in self.publisher.results}


@pytest.fixture
async def jobs() -> AsyncIterator[Callable[..., _Jobs]]:
    made: list[tuple[_Jobs, asyncio.Task[None]]] = []

    def make(pipeline: _SteppingPipeline | None = None, **overrides: Any) -> _Jobs:
        created = _Jobs(pipeline or _SteppingPipeline(), **overrides)
        made.append((created, asyncio.create_task(created.scheduler.react())))
        return created

    yield make
    for created, task in made:
        await condition(lambda created=created: created.scheduler.idle, timeout_s=30)
        task.cancel()


async def test_a_bulk_render_pauses_for_an_interactive_job_and_resumes_after_it(jobs: Callable[..., _Jobs]) -> None:
    worker = jobs()
    bulk = worker.queue("b0", bulk=True)
    await condition(worker.pipeline.model.locked)  # b0 holds the model
    interactive = worker.queue("i0", bulk=False)
    await condition(lambda: len(worker.publisher.results) == 2, timeout_s=30)
    assert worker.pipeline.rendered == ["i0", "b0"]  # the interactive render went first
    assert worker.statuses() == {"i0": "completed", "b0": "completed"}
    assert bulk.preemption.count == 1 and interactive.preemption.count == 0
    history = bulk.lifecycle.history
    assert history[history.index(Phase.PAUSED) :] == [
        Phase.PAUSED, Phase.ADMITTED, Phase.STARTED, Phase.RENDERING, Phase.RENDER_ENDED, Phase.ANSWERED,
    ]  # fmt: skip


async def test_a_render_is_paused_at_most_the_allowed_number_of_times(jobs: Callable[..., _Jobs]) -> None:
    worker = jobs(_SteppingPipeline(steps=200), max_preemptions=1)
    bulk = worker.queue("b0", bulk=True)
    await condition(worker.pipeline.model.locked)
    worker.queue("i0", bulk=False)
    await condition(lambda: "i0" in worker.pipeline.rendered, timeout_s=30)
    await condition(lambda: bulk.lifecycle.phase == Phase.RENDERING and worker.pipeline.model.locked())
    worker.queue("i1", bulk=False)  # b0 was paused once already: i1 waits for it
    await condition(lambda: len(worker.publisher.results) == 3, timeout_s=60)
    assert worker.pipeline.rendered == ["i0", "b0", "i1"] and bulk.preemption.count == 1


@pytest.mark.parametrize("overrides", [{"bulk_min_share": 1.0}, {"preemption": False}, {"max_preemptions": 0}])
async def test_no_pause_when_bulk_is_owed_its_share_or_preemption_is_off(
    jobs: Callable[..., _Jobs], overrides: dict[str, Any]
) -> None:
    worker = jobs(**overrides)
    bulk = worker.queue("b0", bulk=True)
    await condition(worker.pipeline.model.locked)
    worker.queue("i0", bulk=False)
    await condition(lambda: len(worker.publisher.results) == 2, timeout_s=30)
    assert worker.pipeline.rendered == ["b0", "i0"] and bulk.preemption.count == 0


async def test_with_one_render_slot_the_paused_job_gives_it_to_the_interactive_one(jobs: Callable[..., _Jobs]) -> None:
    worker = jobs(max_inflight_jobs=1)
    bulk = worker.queue("b0", bulk=True)
    await condition(worker.pipeline.model.locked)
    worker.queue("i0", bulk=False)  # queued: no render slot is free
    await condition(lambda: len(worker.publisher.results) == 2, timeout_s=30)
    assert worker.pipeline.rendered == ["i0", "b0"] and bulk.preemption.count == 1


async def test_a_paused_job_cancelled_is_answered_and_gives_nothing_back_twice(jobs: Callable[..., _Jobs]) -> None:
    pipeline = _SteppingPipeline(steps=400)
    worker = jobs(pipeline, max_inflight_jobs=1)  # the paused job waits for the one slot
    bulk = worker.queue("b0", bulk=True)
    await condition(pipeline.model.locked)
    worker.queue("i0", bulk=False)
    await condition(lambda: bulk.lifecycle.phase == Phase.PAUSED)
    bulk.stop.request(Cancelled("cancelled by its tenant"))
    await condition(lambda: len(worker.publisher.results) == 2, timeout_s=60)
    assert worker.statuses() == {"b0": "failed", "i0": "completed"}
    worker.queue("i1", bulk=False)  # slots and quotas all came back
    await condition(lambda: len(worker.publisher.results) == 3, timeout_s=60)


async def test_a_shutdown_hands_paused_and_rendering_jobs_back_unanswered(jobs: Callable[..., _Jobs]) -> None:
    pipeline = _SteppingPipeline(steps=4000)
    worker = jobs(pipeline, max_inflight_jobs=1)
    bulk = worker.queue("b0", bulk=True)
    await condition(pipeline.model.locked)
    interactive = worker.queue("i0", bulk=False)
    await condition(lambda: bulk.lifecycle.phase == Phase.PAUSED and interactive.lifecycle.phase == Phase.RENDERING)
    worker.scheduler.stop_accepting()
    await condition(lambda: worker.scheduler.idle, timeout_s=30)
    assert worker.publisher.results == [] and worker.scheduler.offsets.take_committable() == {}
    assert bulk.lifecycle.phase == interactive.lifecycle.phase == Phase.ABANDONED


def test_the_policy_bounds_pauses_and_keeps_the_bulk_share() -> None:
    policy = PreemptionPolicy(enabled=True, max_preemptions=2)
    assert policy.allows(preemptions=1, steps_left=5, bulk_owed=False)
    assert not policy.allows(preemptions=2, steps_left=5, bulk_owed=False)  # paused enough
    assert not policy.allows(preemptions=0, steps_left=1, bulk_owed=False)  # pausing the last step saves nothing
    assert not policy.allows(preemptions=0, steps_left=5, bulk_owed=True)  # this render is bulk's share
    assert not PreemptionPolicy(enabled=False, max_preemptions=2).allows(preemptions=0, steps_left=5, bulk_owed=False)


async def test_a_pause_is_counted_once_and_waits_for_its_resume_or_an_interruption() -> None:
    pause = Preemption()
    pause.request()
    pause.request()
    assert (pause.requested, pause.count) == (True, 1)
    stopped = asyncio.Event()
    waiting = asyncio.create_task(pause.wait_resumed(stopped.wait()))
    await asyncio.sleep(0)
    pause.resume()
    assert await waiting is True and not pause.requested
    pause.request()
    stopped.set()
    assert await pause.wait_resumed(stopped.wait()) is False and pause.count == 2
