"""Progress events on `video.progress`: `started`, then at most one `progress` per request per interval, one at
each change of phase (`schemas.events.ProgressPhase`: the last denoising step starts `decoding`, then `encoding`
and `uploading`), and one `checkpointed` or `resumed` event each time a render's state is saved or a render resumes
from one. `percent` is of the whole job, each phase weighted by its measured share (`consumer.core.progress_phases`).

Best effort by design: they are sent without waiting for the broker's ack and never hold up a render or a commit;
the result on `video.results` stays the one event that counts. Each carries CloudEvents headers
(`io.vidgen.video.started`, `.progress`, `.checkpointed`, `.resumed`: `consumer.core.cloud_events`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.core.clock import WallClock, utc_now
from consumer.core.cloud_events import progress_event
from consumer.core.job_events import Milestone
from consumer.core.progress_phases import step_phase, work_percent
from consumer.settings import Settings
from consumer.telemetry.tracing import inject_headers
from schemas.events import ProgressPhase, VideoProgress, VideoRequest

__all__ = ["ProgressReporter"]

log = logging.getLogger(__name__)


class ProgressReporter:
    def __init__(self, producer: AIOKafkaProducer, settings: Settings, *, clock: WallClock = utc_now) -> None:
        self._producer = producer
        self._topic = settings.progress_topic
        self._interval_s = settings.progress_interval_s
        self._worker_id = settings.worker_id
        self._source = settings.event_source
        self._clock = clock
        self._sending: set[asyncio.Task[None]] = set()

    def started(self, request: VideoRequest, *, attempt: int) -> Callable[[int, int], None]:
        """Announce the request and return the step callback for its render."""
        began = time.monotonic()
        last_sent = began
        total = request.num_inference_steps
        first: int | None = None  # the first step this render reported: a resumed one starts past 1
        self._send(request, "started", "preparing", step=0, total=total, attempt=attempt, eta_s=None)

        def step(done: int, total: int) -> None:
            nonlocal last_sent, first
            first = done if first is None else first
            now = time.monotonic()
            if done < total and done != first and now - last_sent < self._interval_s:
                return  # the render's first step is always told: the phase moves from preparing to denoising
            last_sent = now
            rendered = done - first + 1
            eta = (now - began) / rendered * (total - done) if rendered > 0 else None
            self._send(request, "progress", step_phase(done, total), step=done, total=total, attempt=attempt, eta_s=eta)

        return step

    def phase(self, request: VideoRequest, phase: ProgressPhase, *, attempt: int) -> None:
        """The request's work after its render entered `phase`: one event at once, whatever the interval."""
        total = request.num_inference_steps
        self._send(request, "progress", phase, step=total, total=total, attempt=attempt, eta_s=None)

    def milestone(self, request: VideoRequest, milestone: Milestone, *, step: int, total: int, attempt: int) -> None:
        """The render's state after `step` was saved, or the render resumed from it: both while denoising."""
        self._send(request, milestone, "denoising", step=step, total=total, attempt=attempt, eta_s=None)

    def _send(
        self,
        request: VideoRequest,
        event: Literal["started", "progress"] | Milestone,
        phase: ProgressPhase,
        *,
        step: int,
        total: int,
        attempt: int,
        eta_s: float | None,
    ) -> None:
        progress = VideoProgress(
            request_id=request.request_id,
            tenant_id=request.tenant_id,
            event=event,
            step=step,
            total=total,
            percent=work_percent(phase, step, total),
            phase=phase,
            eta_s=None if eta_s is None else round(eta_s, 1),
            attempt=attempt,
            worker_id=self._worker_id,
            at=self._clock(),
        )
        task = asyncio.get_running_loop().create_task(self._publish(progress))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, progress: VideoProgress) -> None:
        try:
            await self._producer.send(
                self._topic,
                key=progress.request_id.encode("utf-8"),
                value=progress.model_dump_json().encode("utf-8"),
                headers=[*inject_headers(), *progress_event(progress, source=self._source)],
            )
        except KafkaError as exc:
            log.warning("progress event for %s not sent: %r", progress.request_id, exc)
