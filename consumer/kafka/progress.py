"""Progress events on `video.progress`: `started`, then at most one `progress` per request per interval.

Best effort by design: they are sent without waiting for the broker's ack and never hold up a render or a commit;
the result on `video.results` stays the one event that counts. Each carries CloudEvents headers
(`io.vidgen.video.started` / `io.vidgen.video.progress`, `consumer.core.cloud_events`).
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
from consumer.settings import Settings
from consumer.telemetry.tracing import inject_headers
from schemas.events import VideoProgress, VideoRequest

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
        self._send(request, "started", step=0, total=request.num_inference_steps, attempt=attempt, eta_s=None)

        def step(done: int, total: int) -> None:
            nonlocal last_sent
            now = time.monotonic()
            if done < total and now - last_sent < self._interval_s:
                return
            last_sent = now
            eta = (now - began) / done * (total - done) if done else None
            self._send(request, "progress", step=done, total=total, attempt=attempt, eta_s=eta)

        return step

    def _send(
        self,
        request: VideoRequest,
        event: Literal["started", "progress"],
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
            percent=round(100 * step / total, 1),
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
