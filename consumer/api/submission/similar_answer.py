"""The answer of the similar-video fallback: the result the job API publishes itself for a new job that an earlier
video of the same tenant and start image answers (`consumer.core.similar`). It names the earlier job's objects
(the same MP4 and poster: nothing is copied, so no S3 call), the new request's metadata, and `similar_to`."""

from __future__ import annotations

from datetime import datetime

from consumer.api.view.job_state import JobState
from schemas.events import Timings, VideoRequest, VideoResult

__all__ = ["API_WORKER_ID", "similar_result"]

API_WORKER_ID = "api"
"""`worker_id` of a result the job API published itself."""


def similar_result(earlier: JobState, request: VideoRequest, *, now: datetime) -> VideoResult:
    """The completed, degraded result of `request` with the video of `earlier` (a completed job of its tenant)."""
    shown = VideoResult.model_validate(earlier.result)
    return VideoResult(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        status="completed",
        video=shown.video,
        metadata=request.metadata,
        timings=Timings(received_at=now, completed_at=now),
        worker_id=API_WORKER_ID,
        model=shown.model,
        degraded=True,
        similar_to=earlier.id,
    )
