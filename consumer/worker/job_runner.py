"""What happens to one record: admission, processing with retries, and its answer on Kafka (result, dead letter or
retry-topic copy), inside its trace span and log context. The scheduler (`consumer/worker/scheduler.py`) decides when;
this decides what. A job's render ending is posted to the scheduler as a `RenderEnded` event.

Before a job's work starts it may be answered without starting: its tenant cancelled it, its deadline passed, or
workers that started it died too often (the crash guard, which records every start in a `StartLog` first)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from consumer.core.clock import WallClock, utc_now
from consumer.core.intake import DeadLetter, Rejection, usable_id
from consumer.core.job import Headers, Job, Record, RenderEnded, past_deadline
from consumer.core.quotas import QuotaDecision
from consumer.core.results import Identity, failed, not_started, rejected
from consumer.core.retries import RetryPolicy
from consumer.crash_guard.counts import crash_verdict
from consumer.errors import Cancelled, PublishRefused, TooLargeForWorker, VidgenError, WorkerCrashed
from consumer.memory.admission import Reject
from consumer.memory.gate import MemoryGate
from consumer.memory.modes import MemoryMode
from consumer.settings import Settings
from consumer.telemetry.logs import job_context
from consumer.telemetry.tracing import extract_context, messaging_attributes
from consumer.telemetry.worker_metrics import Metrics
from schemas.events import VideoRequest, VideoResult

if TYPE_CHECKING:  # the pipeline's module imports the renderer (torch); the runner only calls it
    from consumer.worker.job_pipeline import JobPipeline

__all__ = ["JobRunner", "Outbox", "ProgressListener", "RenderEnds", "StartLog", "StepFn"]

log = logging.getLogger(__name__)

_GIVE_UP_WRITE_S = 5.0

StepFn = Callable[[int, int], None]
"""Called with (step, total) after each denoising step."""


class Outbox(Protocol):
    """Where a job's answers go, each acknowledged before the call returns
    (`consumer.kafka.worker_publisher.WorkerPublisher` sends them to Kafka). A copy the destination refuses for good
    raises `PublishRefused`."""

    async def result(self, result: VideoResult) -> None: ...
    async def dead_letter(self, record: Record, *, code: str, message: str) -> None: ...
    async def retry_later(self, record: Record, *, headers: Headers) -> None: ...


class ProgressListener(Protocol):
    """Told when an attempt at a request starts; answers with what to call after each denoising step
    (`consumer.kafka.progress.ProgressReporter` is one)."""

    def started(self, request: VideoRequest, *, attempt: int) -> StepFn: ...


class StartLog(Protocol):
    """The crash guard's durable count of the workers that started a record without answering it
    (`consumer.kafka.state_topics.CrashGuardLedger`). Each write is acknowledged before the call returns."""

    def previous(self, record: Record) -> int: ...
    async def started(self, record: Record) -> None: ...
    async def answered(self, record: Record) -> None: ...
    async def abandoned(self, record: Record) -> None: ...


class RenderEnds(Protocol):
    """Where a job posts that its render ended: the scheduler's event queue."""

    def put_nowait(self, item: RenderEnded, /) -> None: ...


class _Abandoned:
    """Marks a job given up unanswered: shut down or revoked while it waited for memory."""


_ABANDONED = _Abandoned()


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
    ) -> None:
        self._settings = settings
        self._publisher = publisher
        self._pipeline = pipeline
        self._identity = identity
        self._metrics = metrics
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock = clock
        self._memory = memory
        self._progress = progress
        self._starts = starts
        self._retry = RetryPolicy.from_settings(settings)
        self.draining = False  # set by the scheduler at shutdown: jobs waiting for memory give up

    async def run(self, job: Job, events: RenderEnds) -> bool:
        """Render and answer an admitted job. When its render ends (or a cache hit makes it unnecessary, or its
        answer is final without one), its memory reservation ends and `RenderEnded(job)` goes on `events`, for the
        scheduler to hand its render slot to the next job.

        A job asked to stop, past its deadline or refused by the crash guard is answered without starting. Otherwise
        its start is recorded before any of its work, withdrawn (a tombstone) once it is answered, and taken back
        (one start less) when it is given up: revoked or shut down past the grace, or abandoned while it waited."""
        with self._span(job.record) as span, _job_logs(job.record, job.request.request_id, job.request.tenant_id):
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
            if outcome is _ABANDONED:
                await self._given_up(job.record)
                return False
            if isinstance(outcome, VideoResult):
                await self._publish(span, outcome)
            if self._starts is not None:
                await self._starts.answered(job.record)
            self._note_stop(span, job, outcome)
            return True

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
        with self._span(record) as span, _job_logs(record, request_id, tenant_id):
            if isinstance(outcome, DeadLetter):
                _mark_error(span, outcome.code)
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
        context = _job_logs(record, request.request_id, request.tenant_id)
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
        if isinstance(error, WorkerCrashed) and self._starts is not None:
            await self._starts.answered(job.record)
        self._note_stop(span, job, result)

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

    def _note_stop(self, span: Span, job: Job, outcome: VideoResult | _Abandoned | None) -> None:
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
        span = self._tracer.start_as_current_span(
            f"process {record.topic}", context=extract_context(record.headers), kind=SpanKind.CONSUMER
        )
        return _described(span, record, self._settings.consumer_group)

    async def _publish(self, span: Span, result: VideoResult) -> None:
        if result.error is not None:
            _mark_error(span, result.error.code)
        self._metrics.jobs.labels(status=result.status, error_code=result.error.code if result.error else "").inc()
        await self._publisher.result(result)

    async def _admit(self, job: Job) -> MemoryMode | Reject | _Abandoned | None:
        """Wait until the render fits in device memory: the mode to render in (None: memory not managed). Given up
        at shutdown or when the job is asked to stop."""
        if self._memory is None:
            return None
        with self._tracer.start_as_current_span("admission wait"):
            admission = await self._memory.admit(job.request, stop=lambda: self.draining or job.stop.requested)
        if admission is None:
            return _ABANDONED
        return admission if isinstance(admission, Reject) else admission.mode

    async def _process_with_retries(self, job: Job, events: RenderEnds) -> VideoResult | _Abandoned | None:
        """Retry transient failures in process with backoff, then hand the request to the retry topic, and after
        the last round (or when the retry topic refuses the copy for good) fail it for good (result `failed`,
        retryable) with a copy in the DLQ. None: handed on.

        Each attempt is admitted by device memory first; the reservation ends as soon as its render does, and the
        scheduler hears of it, so the next request renders while this one encodes and uploads."""
        request, record, delivery = job.request, job.record, job.delivery
        progress = self._progress_for(request, attempt=delivery.attempt)
        started = time.monotonic()
        attempt = delivery.attempt

        posted = False

        def render_ended() -> None:
            nonlocal posted
            self._release_memory(request)
            if not posted:  # once: a retried attempt that renders again keeps the slot it moved to
                posted = True
                events.put_nowait(RenderEnded(job))

        for retry in range(1, self._retry.attempts + 1):
            mode = await self._admit(job)
            if isinstance(mode, _Abandoned) and not job.stop.requested:
                return _ABANDONED
            if isinstance(mode, Reject | _Abandoned):
                error = TooLargeForWorker(mode.message) if isinstance(mode, Reject) else job.stop.stopped("queued")
                timings = not_started(job.received_at)
                return failed(request, error, timings=timings, attempt=attempt, identity=self._identity)
            try:
                result = await self._pipeline.process(
                    request,
                    received_at=job.received_at,
                    record_time=datetime.fromtimestamp(record.timestamp / 1000, UTC),
                    attempt=attempt,
                    on_progress=progress,
                    render_ended=render_ended,
                    memory_mode=mode,
                    stop=job.stop,
                )
            finally:
                self._release_memory(request)  # an attempt that failed before its render ended
            if result.status != "failed" or result.error is None or not result.error.retryable:
                render_ended()  # a final answer (a stopped render too): its slot goes to the next job now
                return result
            failure = result.error
            pause = self._retry.backoff(retry)
            if retry == self._retry.attempts or time.monotonic() - started + pause > self._retry.deadline_s:
                break
            log.warning("request %s attempt %d failed (%s); retrying", request.request_id, attempt, failure.code)
            await asyncio.sleep(pause)
            attempt += 1
        if delivery.round < self._retry.topic_rounds:
            headers = delivery.next_round(
                record.headers, next_attempt=attempt + 1, now_ms=self._now_ms(), delay_s=self._retry.topic_delay_s
            )
            try:
                await self._publisher.retry_later(record, headers=headers)
            except PublishRefused:
                log.exception("request %s cannot go to the retry topic; it fails now", request.request_id)
            else:
                log.warning("request %s moved to the retry topic after attempt %d", request.request_id, attempt)
                return None
        await self._publisher.dead_letter(record, code=failure.code, message=failure.message)
        return result

    def _release_memory(self, request: VideoRequest) -> None:
        if self._memory is not None:
            self._memory.release(request)  # idempotent

    def _progress_for(self, request: VideoRequest, *, attempt: int) -> StepFn | None:
        steps = [listener.started(request, attempt=attempt) for listener in self._progress]
        if not steps:
            return None

        def each(step: int, total: int) -> None:
            for call in steps:
                call(step, total)

        return each

    def _now_ms(self) -> int:
        return int(self._clock().timestamp() * 1000)


@contextlib.contextmanager
def _described(manager: contextlib.AbstractContextManager[Span], record: Record, group: str) -> Iterator[Span]:
    """A process span with the OpenTelemetry messaging semantic conventions for a consumed Kafka record."""
    with manager as span:
        # Only a well-formed request id: a key is client bytes (any length, any characters) and is never echoed raw.
        key = None if record.key is None else usable_id(record.key.decode("ascii", "replace"))
        span.set_attributes(
            messaging_attributes(
                "process", record.topic, key=key, group=group, partition=record.partition, offset=record.offset
            )
        )
        yield span


def _job_logs(record: Record, request_id: str | None, tenant_id: str | None) -> contextlib.AbstractContextManager[None]:
    return job_context(
        request_id=request_id, tenant_id=tenant_id, topic=record.topic, partition=record.partition, offset=record.offset
    )


def _mark_error(span: Span, code: str) -> None:
    span.set_status(Status(StatusCode.ERROR, code))
    span.set_attribute("error.type", code)
