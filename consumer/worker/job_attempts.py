"""One admitted job's attempts: each admitted by device memory first, then the pipeline; transient failures retried
in process with backoff, then the request handed to the retry topic, and after the last round (or when the retry
topic refuses the copy for good) failed for good with a copy in the DLQ. The job runner
(`consumer/worker/job_runner.py`) runs them inside the job's span, once its start is recorded.

A render preempted for an interactive request waits here between its pause and its resume (`JobPause`: its memory
reservation and render slot given up, then both taken again); a job that hands its record back (its render
checkpointed) ends unanswered, like one given up while it waited for memory."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opentelemetry.trace import Tracer

from consumer.core.clock import WallClock
from consumer.core.job import Job
from consumer.core.job_events import JobTrack
from consumer.core.lifecycle import Phase
from consumer.core.results import Identity, failed, not_started
from consumer.core.retries import RetryPolicy
from consumer.errors import PublishRefused, RenderHandedBack, TooLargeForWorker
from consumer.memory.admission import Reject
from consumer.memory.gate import MemoryGate
from consumer.memory.modes import MemoryMode
from consumer.worker.job_ports import Outbox
from schemas.events import VideoRequest, VideoResult

if TYPE_CHECKING:  # the pipeline's module imports the renderer (torch); the attempts only call it
    from consumer.worker.job_pipeline import JobPipeline

__all__ = ["UNANSWERED", "JobAttempts", "JobPause", "Unanswered"]

log = logging.getLogger(__name__)


class Unanswered:
    """Marks a job given up unanswered: shut down or revoked while it waited for memory, or handed back."""


UNANSWERED = Unanswered()


class JobAttempts:
    """Runs a job's attempts until a final answer (a result), a hand-over to the retry topic (None) or `UNANSWERED`."""

    def __init__(
        self,
        *,
        pipeline: JobPipeline,
        publisher: Outbox,
        identity: Identity,
        retry: RetryPolicy,
        tracer: Tracer,
        clock: WallClock,
        memory: MemoryGate | None,
    ) -> None:
        self._pipeline = pipeline
        self._publisher = publisher
        self._identity = identity
        self._retry = retry
        self._tracer = tracer
        self._clock = clock
        self._memory = memory

    async def run(self, job: Job, track: JobTrack) -> VideoResult | Unanswered | None:
        """Each attempt is admitted by device memory first; the reservation ends as soon as its render does, and the
        scheduler hears of it (`track`), so the next request renders while this one encodes and uploads."""
        request, record, delivery = job.request, job.record, job.delivery
        started = time.monotonic()
        attempt = delivery.attempt
        for retry in range(1, self._retry.attempts + 1):
            track.start()
            mode = await self.admit(job)
            if isinstance(mode, Unanswered) and not job.stop.requested:
                return UNANSWERED
            if isinstance(mode, Reject | Unanswered):
                error = TooLargeForWorker(mode.message) if isinstance(mode, Reject) else job.stop.stopped("queued")
                timings = not_started(job.received_at)
                return failed(request, error, timings=timings, attempt=attempt, identity=self._identity)
            try:
                result = await self._pipeline.process(
                    request,
                    received_at=job.received_at,
                    record_time=datetime.fromtimestamp(record.timestamp / 1000, UTC),
                    track=track,
                    attempt=attempt,
                    memory_mode=mode,
                    stop=job.stop,
                    pauses=JobPause(self, job, track),
                )
            except RenderHandedBack as handed:
                log.info("request %s handed back: %s", request.request_id, handed.message)
                return UNANSWERED
            finally:
                self.release_memory(request)  # an attempt that failed before its render ended
            if result.status != "failed" or result.error is None or not result.error.retryable:
                track.render_ended()  # a final answer (a stopped render too): its slot goes to the next job now
                return result
            failure = result.error
            pause = self._retry.backoff(retry)
            if retry == self._retry.attempts or time.monotonic() - started + pause > self._retry.deadline_s:
                break
            log.warning("request %s attempt %d failed (%s); retrying", request.request_id, attempt, failure.code)
            await asyncio.sleep(pause)
            attempt += 1
        if delivery.round < self._retry.topic_rounds:
            now_ms = int(self._clock().timestamp() * 1000)
            headers = delivery.next_round(
                record.headers, next_attempt=attempt + 1, now_ms=now_ms, delay_s=self._retry.topic_delay_s
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

    def release_memory(self, request: VideoRequest) -> None:
        """End the request's memory reservation (idempotent): at the latest when its attempt ends."""
        if self._memory is not None:
            self._memory.release(request)

    def render_ended(self, request: VideoRequest) -> None:
        """The request's render ended: a model's gate frees its device memory for the next render now; the template
        pool's keeps it until the attempt ends (its frames stay in RAM while they are encoded and uploaded)."""
        if self._memory is not None:
            self._memory.render_ended(request)

    async def admit(self, job: Job) -> MemoryMode | Reject | Unanswered | None:
        """Wait until the render fits in device memory: the mode to render in (None: memory not managed). Given up
        at shutdown (the scheduler drains the job) or when the job is asked to stop."""
        if self._memory is None:
            return None
        with self._tracer.start_as_current_span("admission wait"):
            admission = await self._memory.admit(job.request, stop=lambda: job.stop.draining or job.stop.requested)
        if admission is None:
            return UNANSWERED
        if isinstance(admission, Reject):
            return admission
        return admission.mode if self._memory.renders_in_mode else None


class JobPause:
    """Where a job's preempted render waits (`consumer.worker.resumable_render.PauseGate`): its memory reservation ends
    and the scheduler takes its render slot back (`JobTrack.paused`); once the scheduler gives it a slot again, it is
    admitted by device memory as a start is, and resumes in the mode admission chose. A cancel meanwhile raises the
    cancel's reason; a shutdown or revocation raises `RenderHandedBack`."""

    def __init__(self, attempts: JobAttempts, job: Job, track: JobTrack) -> None:
        self._attempts = attempts
        self._job = job
        self._track = track

    async def paused(self) -> MemoryMode | None:
        job = self._job
        self._attempts.release_memory(job.request)
        self._track.paused()
        resumed = await job.preemption.wait_resumed(job.stop.interrupted())
        if job.lifecycle.phase is Phase.ADMITTED:
            self._track.start()  # it has its render slot back, whatever happens next
        if not resumed:
            raise self._interruption()
        mode = await self._attempts.admit(job)
        if isinstance(mode, Unanswered):
            raise self._interruption()
        if isinstance(mode, Reject):
            raise TooLargeForWorker(mode.message)
        self._track.rendering()
        return mode

    def _interruption(self) -> Exception:
        stop = self._job.stop
        return stop.stopped("rendering") if stop.requested else RenderHandedBack("handed back while paused")
