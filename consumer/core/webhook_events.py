"""What a tenant webhook endpoint receives, decided from a result or a progress event. Pure: times come in.

- A result is `video.completed`, or `video.failed` for every other end (failed, rejected, cancelled, expired).
- `started` and `progress` events are `video.progress`, at most one per job per endpoint per interval
  (`ProgressThrottle`).
- The event id (body `id` and `webhook-id` header) is hashed from the endpoint, the tenant, the job and what happened,
  so every attempt and every redelivery of one event to one endpoint carries the same id, and no two endpoints,
  tenants or events share one.
"""

from __future__ import annotations

from collections import OrderedDict

from consumer.core.cloud_events import event_id
from schemas.events import ResultStatus, VideoProgress, VideoResult
from schemas.webhooks import WebhookEvent, WebhookEventData, WebhookEventType

__all__ = ["ProgressThrottle", "progress_webhook_event", "result_event_type", "result_webhook_event"]


def result_event_type(status: ResultStatus) -> WebhookEventType:
    return "video.completed" if status == "completed" else "video.failed"


def result_webhook_event(*, endpoint_id: str, result: VideoResult) -> WebhookEvent:
    """The event of a result for one endpoint; `created_at` is when the job ended, so a redelivery is identical."""
    event_type = result_event_type(result.status)
    video_id = result.request_id
    return WebhookEvent(
        id="evt_" + event_id("webhook", endpoint_id, result.tenant_id, video_id, event_type),
        type=event_type,
        created_at=int(result.timings.completed_at.timestamp()),
        data=WebhookEventData(id=video_id),
    )


def progress_webhook_event(*, endpoint_id: str, progress: VideoProgress) -> WebhookEvent:
    """The event of a progress record for one endpoint: one id per (endpoint, tenant, job, attempt, step)."""
    video_id = progress.request_id
    key = ("webhook", endpoint_id, progress.tenant_id, video_id, "video.progress", progress.attempt, progress.step)
    return WebhookEvent(
        id="evt_" + event_id(*key),
        type="video.progress",
        created_at=int(progress.at.timestamp()),
        data=WebhookEventData(id=video_id, progress=max(0, min(100, int(progress.percent)))),
    )


class ProgressThrottle:
    """At most one progress delivery per (endpoint, job) per `interval_s` of the caller's monotonic clock. Bounded:
    past `capacity` keys the least recently sent is forgotten (its job may then get one extra event)."""

    def __init__(self, *, interval_s: float, capacity: int = 100_000) -> None:
        self._interval_s = interval_s
        self._capacity = capacity
        self._last: OrderedDict[tuple[str, str], float] = OrderedDict()

    def allow(self, endpoint_id: str, video_id: str, now: float) -> bool:
        """Whether a progress event may go now; if so, `now` is remembered as its last."""
        key = (endpoint_id, video_id)
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._capacity:
            self._last.popitem(last=False)
        return True
