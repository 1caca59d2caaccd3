"""The one owner of which job runs when. The consume loop hands it every fetched record; it queues requests by tenant
(`PendingJobs`), starts them while render slots are free (`StageSlots`), runs each as a task through the job runner
and keeps the offsets finished so far (`OffsetTracker`).

Scheduling flows one way. Jobs never call back into it: a job posts typed events on the scheduler's one queue
(`consumer.core.job_events`), and `react` (a task of its own, beside the consume loop) handles them in turn: on
`RenderEnded` the job's memory reservation ends and its render slot goes to the next queued job at once, without
waiting for the next fetch; a `RenderProgress` goes to the job's progress listeners. When a job's task ends, the
scheduler frees its slot and its tenant's quota and starts the next job the same way.

Each job's phase is explicit (`consumer.core.lifecycle`): the scheduler moves it to `admitted` when it takes a slot,
to `answered` when its task ends with its answer acknowledged, and to `abandoned` when it is given up unanswered
(dropped from the queue, revoked, shut down); the job runner and pipeline move it through its work.

A new cancel command is an event on the same queue (the follower of the control topic puts it there): the request's
queued job is answered at once, a running one is asked to stop (`Job.stop`: a rendering job stops at its next denoising
step). A request that arrives after its cancel is answered at intake. A record a worker died on (the crash guard's
count) runs alone, so that if it kills this worker too, no other request is counted with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Coroutine, Hashable
from datetime import datetime
from typing import Any

from consumer.cancellation.commands import CancelCommand, CancelIndex, cancelled_error
from consumer.core.clock import Monotonic
from consumer.core.intake import DeadLetter, Rejection
from consumer.core.job import Job, Record
from consumer.core.job_events import RenderEnded, RenderProgress
from consumer.core.lifecycle import Phase
from consumer.core.offsets import OffsetTracker
from consumer.core.priority_lanes import bulk_render_slots
from consumer.core.slots import Slot, StageSlots
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.job_runner import JobRunner
from consumer.worker.policies import pending_jobs

__all__ = ["JobScheduler", "SchedulerEvent"]

log = logging.getLogger(__name__)

SchedulerEvent = RenderEnded | RenderProgress | CancelCommand
"""What the scheduler's one queue carries: a job's render ended or one of its denoising steps did (from the job's
`JobTrack`), a new cancel command (from the control topic's follower)."""


class JobScheduler:
    """Jobs from their fetch to their end. `crash` is set when a job dies outside the result path: its offset can
    never be committed, so the consume loop stops rather than wedge."""

    def __init__(
        self,
        settings: Settings,
        runner: JobRunner,
        metrics: Metrics,
        *,
        events: asyncio.Queue[SchedulerEvent],
        clock: Monotonic = time.monotonic,
        cancels: CancelIndex | None = None,
    ) -> None:
        self._runner = runner
        self._metrics = metrics
        self._cancels = cancels
        self.pending = pending_jobs(settings, clock=clock)
        self._slots = StageSlots(rendering=settings.max_inflight_jobs, finishing=settings.max_finishing_jobs)
        self._bulk_slots = bulk_render_slots(settings.max_inflight_jobs)
        self._slot_of: dict[int, Slot] = {}  # by id() of the running job
        self._admitted: dict[int, Job] = {}  # the running jobs that hold a slot, by id()
        self._parked: Job | None = None  # must run alone: taken from the queue, waits for the jobs before it to end
        self._alone: Job | None = None  # running alone: nothing starts beside it
        self._events = events
        self.offsets = OffsetTracker()
        self._tasks: dict[Hashable, set[asyncio.Task[None]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._accepting = True
        self.crash: BaseException | None = None

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return not self._running and not len(self.pending) and self._parked is None

    async def react(self) -> None:
        """Forever, each event of the queue in turn. Runs as its own task."""
        while True:
            event = await self._events.get()
            if isinstance(event, RenderProgress):
                self._runner.progressed(event)
            elif isinstance(event, RenderEnded):
                self._render_ended(event.job)
            else:
                self._cancel(event)

    def _render_ended(self, job: Job) -> None:
        """The job no longer needs the model: its memory reservation ends and its render slot goes to the next job."""
        self._runner.render_ended(job)
        slot = self._slot_of.get(id(job))
        if slot is not None and self._slots.advance(slot):
            self.start_admitted()

    def queue(self, job: Job) -> None:
        """A parsed request: it waits for a slot and its tenant's turn (`start_admitted`), unless its tenant cancelled
        it already (then it is answered at once)."""
        self.offsets.start(job.tp, job.record.offset)
        request = job.request
        if self._cancels is not None:
            ignored = self._cancels.foreign(request.request_id, request.tenant_id)
            if ignored:
                self._metrics.control_ignored.labels(reason="wrong_tenant").inc(ignored)
            command = self._cancels.cancel_of(request.request_id, request.tenant_id)
            if command is not None:
                job.stop.request(cancelled_error(command))
                self._spawn(job.tp, job.record, self._runner.run(job, self._events), job=job)
                return
        self.pending.push(job)

    def answer(self, tp: Hashable, record: Record, outcome: DeadLetter | Rejection, received_at: datetime) -> None:
        """A record answered without a slot (a dead letter, a rejection)."""
        self.offsets.start(tp, record.offset)
        self._spawn(tp, record, self._runner.answer(record, outcome, received_at))

    def start_admitted(self) -> None:
        """Start queued requests while job slots are free, in the order the tenant quotas allow; refuse those the
        quotas reject. A record a worker died on waits until the jobs before it have ended, and nothing starts while
        it runs. Runs after each fetch and whenever a slot frees up."""
        while self._accepting and self._alone is None and self._slots.free:
            job = self._parked or self._take()
            if job is None:
                return
            self._parked = None
            if self._runner.runs_alone(job):
                if self._slot_of:
                    self._parked = job  # its tenant's quota stays taken meanwhile
                    return
                self._alone = job
            self._slot_of[id(job)] = self._slots.take()
            self._admitted[id(job)] = job
            job.lifecycle.advance(Phase.ADMITTED)
            self._spawn(job.tp, job.record, self._runner.run(job, self._events), job=job, admitted=True)

    def _take(self) -> Job | None:
        """The next queued job the quotas admit (interactive first, see `PendingJobs.take`); those they reject on the
        way are refused."""
        while (taken := self.pending.take(bulk_allowed=self._bulk_slot_free())) is not None:
            job, decision = taken
            if decision.admitted:
                return job
            self._spawn(job.tp, job.record, self._runner.refuse(job, decision), job=job)
        return None

    def _bulk_slot_free(self) -> bool:
        """Bulk jobs hold fewer render slots than they may: all but one (`consumer/core/priority_lanes.py`)."""
        bulk = [key for key, job in self._admitted.items() if self.pending.lane(job) == "bulk"]
        return sum(self._slot_of[key].stage == "rendering" for key in bulk) < self._bulk_slots

    def _cancel(self, command: CancelCommand) -> None:
        """Every job of the command's request and tenant is asked to stop: a queued one is answered at once, a
        running one stops where it is (between denoising steps while it renders; past its render it finishes). A job
        of the same request id but another tenant is left alone, and the command counted as ignored."""
        parked = [self._parked] if self._parked is not None else []
        reason = cancelled_error(command)
        for job in [*self.pending, *parked, *self._admitted.values()]:
            if job.request.request_id != command.request_id:
                continue
            if job.request.tenant_id == command.tenant_id:
                job.stop.request(reason)
            else:
                self._metrics.control_ignored.labels(reason="wrong_tenant").inc()
        answered = self.pending.remove(lambda job: job.stop.requested)
        if self._parked is not None and self._parked.stop.requested:
            answered.append(self._unpark())
        for job in answered:
            self._spawn(job.tp, job.record, self._runner.run(job, self._events), job=job)
        if parked and self._parked is None:
            self.start_admitted()

    def _unpark(self) -> Job:
        job, self._parked = self._parked, None
        if job is None:
            raise RuntimeError("no job is parked")
        self.pending.release(job)
        return job

    def give_up_deferred(self) -> None:
        """Deferred jobs never keep the pending queue full, so a tenant over its quota cannot stop other tenants'
        records from being fetched: those the queue gives up are refused (past the tenant's max wait) or handed to
        the retry topic until their turn in the tenant's budget."""
        for job, decision in self.pending.overflow():
            if decision.action == "reject":
                work = self._runner.refuse(job, decision)
            else:
                work = self._runner.defer(job, decision)
            self._spawn(job.tp, job.record, work, job=job)

    def tasks_of(self, partitions: Collection[Hashable]) -> list[asyncio.Task[None]]:
        return [task for tp in partitions for task in self._tasks.get(tp, ())]

    def running_tasks(self) -> list[asyncio.Task[None]]:
        return list(self._running)

    def drop(self, partitions: Collection[Hashable]) -> None:
        """Revoked partitions: forget their queued jobs (re-read by the next owner)."""
        dropped = self.pending.drop(partitions)
        if self._parked is not None and self._parked.tp in partitions:
            dropped.append(self._unpark())
        _abandon(dropped)

    def forget(self, partitions: Collection[Hashable]) -> None:
        """Revoked partitions, once their jobs finished or were cancelled: nothing of them may be committed by us."""
        for tp in partitions:
            self.offsets.forget(tp)
            self._tasks.pop(tp, None)
        self._metrics.inflight.set(len(self._running))

    def stop_accepting(self) -> None:
        """Shutdown: start nothing more, forget what is queued, and let jobs waiting for memory give up."""
        self._accepting = False
        for job in self._admitted.values():
            job.stop.drain()
        dropped = self.pending.drop()
        if self._parked is not None:
            dropped.append(self._unpark())
        _abandon(dropped)

    def _spawn(
        self,
        tp: Hashable,
        record: Record,
        work: Coroutine[Any, Any, bool],
        *,
        job: Job | None = None,
        admitted: bool = False,
    ) -> None:
        """Run `work` (answering `record`, of `job` when it is a request) as a task; an `admitted` job holds a slot."""

        async def run() -> None:
            answered = False
            try:
                answered = await work  # False: abandoned unanswered, so the offset must not be committed past it
                if answered:
                    self.offsets.finish(tp, record.offset)
            finally:
                if job is not None:
                    job.lifecycle.advance(Phase.ANSWERED if answered else Phase.ABANDONED)
                    if admitted:
                        self._end(job)
            self._metrics.inflight.set(len(self._running))

        task = asyncio.create_task(run(), name=f"job-{record.topic}-{record.partition}-{record.offset}")
        tasks = self._tasks.setdefault(tp, set())
        for bucket in (tasks, self._running):
            bucket.add(task)
            task.add_done_callback(bucket.discard)
        task.add_done_callback(self.note_crash)
        self._metrics.inflight.set(len(self._running))

    def _end(self, job: Job) -> None:
        """An admitted job's task ended: its slot and its tenant's quota go to the next job."""
        self.pending.release(job)
        slot = self._slot_of.pop(id(job))
        del self._admitted[id(job)]
        if self._alone is job:
            self._alone = None
        if self._slots.release(slot):
            self.start_admitted()

    def note_crash(self, task: asyncio.Task[None]) -> None:
        """A done callback for the scheduler's tasks (its jobs, its `react`): one that raised stops the worker."""
        if task.cancelled() or task.exception() is None:
            return
        self.crash = task.exception()
        log.critical("task %s crashed: %r; stopping the worker", task.get_name(), self.crash)


def _abandon(jobs: list[Job]) -> None:
    """Queued jobs given up unanswered: their records are read again."""
    for job in jobs:
        job.lifecycle.advance(Phase.ABANDONED)
