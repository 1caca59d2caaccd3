"""The one owner of which job runs when. The consume loop hands it every fetched record; it queues requests by tenant
(`PendingJobs`), starts them while render slots are free (`HeldSlots`), runs each as a task through the job runner
(`JobTasks`) and keeps the offsets finished so far (`OffsetTracker`).

Scheduling flows one way: a job posts typed events on the scheduler's one queue (`consumer.core.job_events`), and
`react` (a task of its own) handles them in turn: on `RenderEnded` the job's memory reservation ends and its render slot
goes to the next queued job at once; a `RenderProgress` or `PhaseReached` goes to the job's progress listeners; on
`RenderPaused` (a bulk render preempted, `consumer.core.paused_jobs`) its slot goes to the interactive job that waited,
and the paused job gets one again, ahead of every queued bulk job, when no interactive job is left to start or bulk is
owed its share. A job's ended task frees its slot and its tenant's quota the same way. The scheduler moves each job's
phase (`consumer.core.lifecycle`) to `admitted`, `answered` or `abandoned`; the runner and pipeline the rest.

A new cancel command is an event on the same queue: the request's queued job is answered at once, a running one is
asked to stop (`Job.stop`: a rendering job stops at its next denoising step). A record a worker died on (the crash
guard's count) runs alone, so that if it kills this worker too, no other request is counted with it. Where renders
are checkpointed, a shutdown or a revocation hands running and paused jobs back (`StopSignal.hand_back`).
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
from consumer.core.job_events import PhaseReached, RenderEnded, RenderPaused, RenderProgress
from consumer.core.lifecycle import Phase
from consumer.core.offsets import OffsetTracker
from consumer.core.paused_jobs import PausedJobs
from consumer.core.priority_lanes import bulk_render_slots
from consumer.core.slots import HeldSlots, StageSlots
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.job_runner import JobRunner
from consumer.worker.job_tasks import JobTasks
from consumer.worker.policies import pending_jobs, preemption_policy

__all__ = ["JobScheduler", "SchedulerEvent"]

log = logging.getLogger(__name__)

SchedulerEvent = RenderEnded | RenderPaused | RenderProgress | PhaseReached | CancelCommand
"""What the scheduler's one queue carries: a job's render ended or paused, or one of its denoising steps did, or its
work entered a later phase (from the job's `JobTrack`), a new cancel command (from the control topic's follower)."""


class JobScheduler:
    """Jobs from their fetch to their end, each answered by a task of `tasks`. `checkpointed`: the worker's renders
    are checkpointed, so stopping jobs hand their records back and bulk renders may be preempted."""

    def __init__(
        self,
        settings: Settings,
        runner: JobRunner,
        metrics: Metrics,
        *,
        events: asyncio.Queue[SchedulerEvent],
        clock: Monotonic = time.monotonic,
        cancels: CancelIndex | None = None,
        checkpointed: bool = False,
    ) -> None:
        self._runner = runner
        self._hand_back = checkpointed  # stopping jobs hand their records back, renders checkpointed
        self._metrics = metrics
        self._cancels = cancels
        self.pending = pending_jobs(settings, clock=clock)
        slots = StageSlots(rendering=settings.max_inflight_jobs, finishing=settings.max_finishing_jobs)
        bulk_slots = bulk_render_slots(settings.max_inflight_jobs)
        self._held: HeldSlots[Job] = HeldSlots(slots, bulk_limit=bulk_slots, is_bulk=self._is_bulk)
        self._parked: Job | None = None  # must run alone: taken from the queue, waits for the jobs before it to end
        self._alone: Job | None = None  # running alone: nothing starts beside it
        preemption = preemption_policy(settings, checkpoints=checkpointed)  # a paused render's state is a checkpoint
        self._pauses = PausedJobs(preemption, held=self._held, pending=self.pending)
        self._events = events
        self.offsets = OffsetTracker()
        self.tasks = JobTasks(metrics)
        self._accepting = True

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running."""
        return not self.tasks and not len(self.pending) and self._parked is None

    async def react(self) -> None:
        """Forever, each event of the queue in turn. Runs as its own task."""
        while True:
            event = await self._events.get()
            if isinstance(event, RenderProgress | PhaseReached):
                self._runner.progressed(event)
                if isinstance(event, RenderProgress):  # a denoising step: where a bulk render may pause
                    self._preempt(self._pauses.stepped(event, alone=self._alone))
            elif isinstance(event, RenderEnded):
                self._render_ended(event.job)
            elif isinstance(event, RenderPaused):
                self._render_paused(event.job)
            else:
                self._cancel(event)

    def _render_ended(self, job: Job) -> None:
        """The job no longer needs the model: its memory reservation ends and its render slot goes to the next job."""
        self._pauses.left_model(job)
        self._runner.render_ended(job)
        if self._held.advance(job):
            self.start_admitted()

    def _render_paused(self, job: Job) -> None:
        """The job's render paused: its render slot goes to the job that waited, and it waits to resume."""
        self._pauses.paused(job)
        self._held.release(job)
        self.start_admitted()

    def _preempt(self, holder: Job | None) -> None:
        """Ask the bulk render holding the model to pause at its next step (`consumer.core.paused_jobs` chose it)."""
        if holder is not None:
            log.info("pausing bulk request %s for an interactive one", holder.request.request_id)
            self._metrics.preemptions.inc()
            holder.preemption.request()

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
        while self._accepting and self._alone is None and self._held.free:
            job = self._parked or self._next()
            if job is None:
                break
            self._parked = None
            if job.lifecycle.phase is Phase.PAUSED:
                self._resume(job)
                continue
            if self._runner.runs_alone(job):
                if self._held:
                    self._parked = job  # its tenant's quota stays taken meanwhile
                    return
                self._alone = job
            self._held.take(job)
            job.lifecycle.advance(Phase.ADMITTED)
            self._spawn(job.tp, job.record, self._runner.run(job, self._events), job=job, admitted=True)
        self._preempt(self._pauses.to_pause(alone=self._alone))

    def _next(self) -> Job | None:
        """A paused job when bulk is owed its share; else the next queued job (interactive first; new bulk jobs only
        while none is paused); else a paused job."""
        owed = self._pauses.resumable(owed_only=True)
        if owed is not None:
            return owed
        taken = self._take(bulk_allowed=self._held.bulk_free() and not self._pauses)
        return taken if taken is not None else self._pauses.resumable(owed_only=False)

    def _resume(self, job: Job) -> None:
        """A paused job takes a render slot again and may resume its render."""
        self._held.take(job)
        job.lifecycle.advance(Phase.ADMITTED)
        self.pending.resumed(job)
        job.preemption.resume()

    def _take(self, *, bulk_allowed: bool) -> Job | None:
        """The next queued job the quotas admit (interactive first, see `PendingJobs.take`); those they reject on the
        way are refused."""
        while (taken := self.pending.take(bulk_allowed=bulk_allowed)) is not None:
            job, decision = taken
            if decision.admitted:
                return job
            self._spawn(job.tp, job.record, self._runner.refuse(job, decision), job=job)
        return None

    def _is_bulk(self, job: Job) -> bool:
        return self.pending.lane(job) == "bulk"

    def _cancel(self, command: CancelCommand) -> None:
        """Every job of the command's request and tenant is asked to stop: a queued one is answered at once, a
        running one stops where it is (between denoising steps while it renders; past its render it finishes). A job
        of the same request id but another tenant is left alone, and the command counted as ignored."""
        parked = [self._parked] if self._parked is not None else []
        reason = cancelled_error(command)
        for job in [*self.pending, *parked, *self._held.jobs(), *self._pauses]:
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

    def drop(self, partitions: Collection[Hashable] | None = None) -> None:
        """Forget the queued jobs of revoked partitions (or all, at shutdown): the next owner reads them again. Where
        renders are checkpointed their running and paused jobs hand their records back (rendering ones at their next
        step); otherwise, at shutdown, jobs waiting for device memory give up."""
        dropped = self.pending.drop(partitions)
        if self._parked is not None and (partitions is None or self._parked.tp in partitions):
            dropped.append(self._unpark())
        _abandon(dropped)
        for job in [*self._held.jobs(), *self._pauses]:
            if self._hand_back and (partitions is None or job.tp in partitions):
                job.stop.hand_back()
            elif partitions is None:
                job.stop.drain()

    def forget(self, partitions: Collection[Hashable]) -> None:
        """Revoked partitions, once their jobs finished or were cancelled: nothing of them may be committed by us."""
        for tp in partitions:
            self.offsets.forget(tp)
        self.tasks.forget(partitions)

    def stop_accepting(self) -> None:
        """Shutdown: start nothing more, and forget what is queued (`drop`)."""
        self._accepting = False
        self.drop()

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
            self.tasks.count()

        self.tasks.spawn(tp, f"job-{record.topic}-{record.partition}-{record.offset}", run())

    def _end(self, job: Job) -> None:
        """An admitted job's task ended: its slot (none while paused) and its tenant's quota go to the next job."""
        self.pending.release(job)
        self._pauses.ended(job)
        if self._alone is job:
            self._alone = None
        if self._held.release(job):
            self.start_admitted()


def _abandon(jobs: list[Job]) -> None:
    """Queued jobs given up unanswered: their records are read again."""
    for job in jobs:
        job.lifecycle.advance(Phase.ABANDONED)
