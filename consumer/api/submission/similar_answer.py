"""The answer of the similar-video fallback: the result the job API publishes itself for a new job that an earlier
video of the same tenant and start image answers (`consumer.core.similar`). It names the earlier job's objects
(the same MP4 and poster: nothing is copied, so no S3 call), the new request's metadata, and `similar_to`."""

from __future__ import annotations

from datetime import datetime

from consumer.api.view.job_state import JobState
from consumer.core.similar import similar_answer
from schemas.events import VideoRequest, VideoResult

__all__ = ["API_WORKER_ID", "similar_result"]

API_WORKER_ID = "api"
"""`worker_id` of a result the job API published itself."""


def similar_result(earlier: JobState, request: VideoRequest, *, now: datetime) -> VideoResult:
    """The completed, degraded result of `request` with the video of `earlier` (a completed job of its tenant)."""
    return similar_answer(VideoResult.model_validate(earlier.result), request, now=now, worker_id=API_WORKER_ID)
