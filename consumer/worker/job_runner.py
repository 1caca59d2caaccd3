"""What happens to one record: its answer on Kafka (result, dead letter or retry-topic copy) inside its trace span and
log context (`job_spans`), after its attempts (`job_attempts`: memory admission, the pipeline, retries). The
scheduler (`consumer/worker/scheduler.py`) decides when; this decides what. Each job's `JobTrack` moves its
lifecycle and posts its render's end and steps on the scheduler's queue; the scheduler hands them back here
(`render_ended`, `progressed`) as it reacts.

Before a job's work starts it may be answered without starting: its tenant cancelled it, its deadline passed, or workers
that started it died too often (the crash guard, which records every start in a `StartLog` first, whether or not the
job resumes from a checkpoint: a request that kills workers never resumes forever). Once a request is answered (or
cancelled), its render checkpoint is deleted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, Tracer

from consumer.core.clock import WallClock, utc_now
from consumer.core.intake import DeadLetter, Rejection
from consumer.core.job import Job, Record, past_deadline
from consumer.core.job_events import JobEventSink, JobTrack, PhaseReached, RenderProgress
from consumer.core.quotas import QuotaDecision
from consumer.core.results import Identity, failed, not_started, rejected
from consumer.crash_guard.counts import crash_verdict
from consumer.errors import Cancelled, VidgenError, WorkerCrashed
from consumer.memory.gate import MemoryGate
from consumer.settings import Settings
from consumer.telemetry.tracing import extract_context
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.job_attempts import UNANSWERED, JobAttempts, Unanswered
from consumer.worker.job_ports import Outbox, ProgressListener, StartLog, StepFn
from consumer.worker.job_spans import job_logs, mark_error, process_span
from consumer.worker.policies import retry_policy
from schemas.events import VideoResult

if TYPE_CHECKING:  # the pipeline's module imports the renderer (torch); the runner only calls it
    from consumer.worker.checkpoint_store import CheckpointStore
    from consumer.worker.job_pipeline import JobPipeline

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)

_GIVE_UP_WRITE_S = 5.0


class JobRunner:
    """Each method answers one record and returns True, or False when it was abandoned unanswered (shutdown while
    waiting for memory): then its offset must not be committed past."""

    def __init__(
        self,
        *,
        settings: Settings,
        publisher: Outbox,
        pipeline: JobPipeline,
        identity: Identity,
        metrics: Metrics,
        tracer: Tracer | None = None,
        clock: WallClock = utc_now,
        memory: MemoryGate | None = None,
        progress: Sequence[ProgressListener] = (),
        starts: StartLog | None = None,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._identity = identity
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock = clock
        self._progress = progress
        self._starts = starts
        self._checkpoints = checkpoints
        self._retry = retry_policy(settings)
        self._attempts = JobAttempts(
            pipeline=pipeline,
            publisher=publisher,
            identity=identity,
            retry=self._retry,
            tracer=self._tracer,
            clock=clock,
            memory=memory,
        )
        self._listening: dict[int, StepFn] = {}  # the progress listeners of each running job, by id() of the job

    async def run(self, job: Job, events: JobEventSink) -> bool:
        """Render and answer an admitted job. When its render ends (or a cache hit makes it unnecessary, or its
        answer is final without one), `RenderEnded(job)` goes on `events`, for the scheduler to end its memory
        reservation (`render_ended`) and hand its render slot to the next job; each denoising step goes there as a
        `RenderProgress`.

        A job asked to stop, past its deadline or refused by the crash guard is answered without starting. Otherwise
        its start is recorded before any of its work, withdrawn (a tombstone) once it is answered, and taken back
        (one start less) when it is given up: revoked or shut down past the grace, or abandoned while it waited."""
        with self._span(job.record) as span, job_logs(job.record, job.request.request_id, job.request.tenant_id):
            refusal = self._refusal(job)
            if refusal is not None:
                await self._refuse_start(span, job, refusal)
                return True
            if self._starts is not None:
                await self._starts.started(job.record)
            try:
                outcome = await self._process_with_retries(job, events)
            except asyncio.CancelledError:
                await self._given_up(job.record)
                raise
            if outcome is UNANSWERED:
                await self._given_up(job.record)
                return False
            if isinstance(outcome, VideoResult):
                await self._publish(span, outcome)
                await self._discard_checkpoint(job)
            if self._starts is not None:
                await self._starts.answered(job.record)
            self._note_stop(span, job, outcome)
            return True

    def render_ended(self, job: Job) -> None:
        """The job no longer needs the model: its memory reservation ends (the scheduler, reacting to `RenderEnded`)."""
        self._attempts.render_ended(job.request)

    def progressed(self, event: RenderProgress | PhaseReached) -> None:
        """Tell the job's progress listeners (the scheduler, reacting to `RenderProgress` or `PhaseReached`), in the
        context the step ended or the phase began in: a step or a phase only while the job's run lasts, a checkpoint
        or resume also after it (a job that handed its record back says so as it ends)."""
        job = event.job
        attempt = job.delivery.attempt
        if isinstance(event, PhaseReached):
            if id(job) in self._listening:
                for listener in self._progress:
                    event.context.run(listener.phase, job.request, event.phase, attempt=attempt)
            return
        if event.milestone is None:
            step = self._listening.get(id(job))
            if step is not None:
                event.context.run(step, event.step, event.total)
            return
        for listener in self._progress:
            milestone = event.milestone
            event.context.run(
                listener.milestone, job.request, milestone, step=event.step, total=event.total, attempt=attempt
            )

    def runs_alone(self, job: Job) -> bool:
        """Whether the job must run with no other job beside it: a worker died holding its record before (and the
        crash guard still lets it start). If it kills this worker too, no other request is counted with it."""
        deaths = 0 if self._starts is None else self._starts.previous(job.record)
        return 0 < deaths < self._settings.max_worker_crashes

    async def answer(
        self, record: Record, outcome: DeadLetter | Rejection | VideoResult, received_at: datetime
    ) -> bool:
        """Records answered without rendering: dead letters, rejections, quota refusals."""
        request_id = None if isinstance(outcome, DeadLetter) else outcome.request_id
        tenant_id = None if isinstance(outcome, DeadLetter) else outcome.tenant_id
        with self._span(record) as span, job_logs(record, request_id, tenant_id):
            if isinstance(outcome, DeadLetter):
                mark_error(span, outcome.code)
                self._metrics.dead_letters.labels(code=outcome.code).inc()
                await self._publisher.dead_letter(record, code=outcome.code, message=outcome.message)
                return True
            if isinstance(outcome, Rejection):
                outcome = rejected(outcome, received_at=received_at, identity=self._identity)
            await self._publish(span, outcome)
            return True

    async def refuse(self, job: Job, decision: QuotaDecision) -> bool:
        """A request its tenant's quota turned away."""
        error = decision.error(job.request.tenant_id)
        result = failed(job.request, error, timings=not_started(job.received_at), attempt=1, identity=self._identity)
        return await self.answer(job.record, result, job.received_at)

    async def defer(self, job: Job, decision: QuotaDecision) -> bool:
        """Hand a job its tenant's quota deferred to the retry topic until its turn comes (attempt, round and trace
        context kept); refuse it (`rate_limited`) instead if the topic will not take the copy."""
        record, request = job.record, job.request
        delay_s = self._retry.deferral_delay(decision.retry_after_s)
        headers = job.delivery.deferred(
            record.headers,
            waiting_since_ms=int(job.first_asked_at.timestamp() * 1000),
            now_ms=self._now_ms(),
            delay_s=delay_s,
        )
        context = job_logs(record, request.request_id, request.tenant_id)
        with self._tracer.start_as_current_span("quota deferral", context=extract_context(record.headers)), context:
            try:
                await self._publisher.retry_later(record, headers=headers)
            except VidgenError as exc:  # refused for good (e.g. too large for the topic): answer it now instead
                log.warning("request %s cannot be deferred (%s); refusing it", request.request_id, exc.code)
                refusal = QuotaDecision("reject", reason=f"{decision.reason}; cannot be deferred")
                return await self.refuse(job, refusal)
            log.info("request %s deferred by its tenant's quota for %.1f s", request.request_id, delay_s)
        return True

    def _refusal(self, job: Job) -> VidgenError | None:
        """Why the job is answered without starting: cancelled, past its deadline, or refused by the crash guard."""
        if job.stop.requested:
            return job.stop.stopped("queued")
        expired = past_deadline(job.request.deadline, now=self._clock())
        if expired is not None or self._starts is None:
            return expired
        return crash_verdict(self._starts.previous(job.record), limit=self._settings.max_worker_crashes)

    async def _refuse_start(self, span: Span, job: Job, error: VidgenError) -> None:
        """A `failed` result; a request that kills workers also goes to the DLQ, and its count is withdrawn."""
        timings = not_started(job.received_at)
        result = failed(job.request, error, timings=timings, attempt=job.delivery.attempt, identity=self._identity)
        if isinstance(error, WorkerCrashed):
            log.error("request %s not started again: %s", job.request.request_id, error.message)
            self._metrics.worker_crash_refusals.inc()
            await self._publisher.dead_letter(job.record, code=error.code, message=error.message)
        await self._publish(span, result)
        await self._discard_checkpoint(job)
        if isinstance(error, WorkerCrashed) and self._starts is not None:
            await self._starts.answered(job.record)
        self._note_stop(span, job, result)

    async def _discard_checkpoint(self, job: Job) -> None:
        """The request is answered: its render checkpoint, if any, is no longer needed."""
        if self._checkpoints is not None:
            await self._checkpoints.discard(job.request)

    async def _given_up(self, record: Record) -> None:
        """A graceful end without an answer is no crash: the start it recorded is taken back. Within a bound, so that
        a shutdown during a broker outage still ends (the start then stays counted: one death too many, never one
        too few)."""
        if self._starts is None:
            return
        try:
            async with asyncio.timeout(_GIVE_UP_WRITE_S):
                await self._starts.abandoned(record)
        except TimeoutError:
            log.warning("the start of %s[%d]@%d stays counted: no ack", record.topic, record.partition, record.offset)

    def _note_stop(self, span: Span, job: Job, outcome: VideoResult | Unanswered | None) -> None:
        """A cancel that found the job: where (`vidgen_cancellations_total{stage}`, a span event). One that came
        after its render ended is late: the job was left to finish."""
        if not job.stop.requested:
            return
        error = outcome.error if isinstance(outcome, VideoResult) else None
        stopped = error is not None and error.code == Cancelled.code
        stage = job.stop.stopped_in if stopped and job.stop.stopped_in is not None else "late"
        self._metrics.cancellations.labels(stage=stage).inc()
        span.add_event("cancelled", {"vidgen.cancel.stage": stage})
        log.info("request %s cancelled (%s)", job.request.request_id, stage)

    def _span(self, record: Record) -> contextlib.AbstractContextManager[Span]:
        return process_span(self._tracer, record, self._settings.consumer_group)

    async def _publish(self, span: Span, result: VideoResult) -> None:
        if result.error is not None:
            mark_error(span, result.error.code)
        self._metrics.jobs.labels(status=result.status, error_code=result.error.code if result.error else "").inc()
        await self._publisher.result(result)

    async def _process_with_retries(self, job: Job, events: JobEventSink) -> VideoResult | Unanswered | None:
        """The job's attempts (`JobAttempts`), heard by its progress listeners meanwhile. None: handed on to the retry
        topic."""
        self._listen(job)
        try:
            return await self._attempts.run(job, JobTrack(job, events))
        finally:
            self._listening.pop(id(job), None)

    def _listen(self, job: Job) -> None:
        """Announce the delivery's first attempt to the progress listeners; their step callbacks hear every
        `RenderProgress` of the job's run."""
        steps = [listener.started(job.request, attempt=job.delivery.attempt) for listener in self._progress]
        if steps:
            self._listening[id(job)] = _each(steps)

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)


def _each(steps: Sequence[StepFn]) -> StepFn:
    def each(step: int, total: int) -> None:
        for call in steps:
            call(step, total)

    return each
