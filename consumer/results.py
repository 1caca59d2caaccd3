"""Build result events from outcomes. Pure: no clock, no I/O; times come in as arguments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from consumer.errors import VidgenError
from consumer.intake import Rejection
from schemas.events import ErrorInfo, Timings, VideoInfo, VideoRequest, VideoResult

__all__ = ["Identity", "completed", "failed", "rejected"]


@dataclass(frozen=True)
class Identity:
    """Who answers: stamped on every result."""

    worker_id: str
    model: str


def completed(
    request: VideoRequest,
    *,
    video: VideoInfo,
    cache_hit: bool,
    timings: Timings,
    attempt: int,
    identity: Identity,
    memory_mode: str | None = None,
) -> VideoResult:
    return VideoResult(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        status="completed",
        memory_mode=memory_mode,
        video=video,
        cache_hit=cache_hit,
        metadata=dict(request.metadata),
        timings=timings,
        attempt=attempt,
        worker_id=identity.worker_id,
        model=identity.model,
    )


def failed(
    request: VideoRequest,
    error: VidgenError,
    *,
    timings: Timings,
    attempt: int,
    identity: Identity,
) -> VideoResult:
    """`failed`, or `rejected` when the error is the request's own fault (a bad image, a forbidden URL)."""
    return VideoResult(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        status="rejected" if error.rejects else "failed",
        error=ErrorInfo(code=error.code, message=error.message, retryable=error.retriable, field=error.field),
        metadata=dict(request.metadata),
        timings=timings,
        attempt=attempt,
        worker_id=identity.worker_id,
        model=identity.model,
    )


def rejected(rejection: Rejection, *, received_at: datetime, identity: Identity) -> VideoResult:
    return VideoResult(
        request_id=rejection.request_id,
        tenant_id=rejection.tenant_id,
        status="rejected",
        error=ErrorInfo(
            code=rejection.error.code,
            message=rejection.error.message,
            retryable=False,
            field=rejection.error.field,
        ),
        metadata=rejection.metadata,
        timings=Timings(received_at=received_at, completed_at=received_at),
        worker_id=identity.worker_id,
        model=identity.model,
    )
