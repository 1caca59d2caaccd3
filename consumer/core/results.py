"""Build result events, and their timings, from outcomes. The one place results are made. Pure: no clock, no I/O;
times come in as arguments.

Error text is cut and made visible here (`consumer.core.event_bounds.shown`), so a result never carries more than
`MAX_ERROR_MESSAGE_CHARS` of message, whatever an exception said."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.core.event_bounds import MAX_ERROR_FIELD_CHARS, MAX_ERROR_MESSAGE_CHARS, shown
from consumer.core.intake import Rejection
from consumer.errors import PublishRefused, VidgenError
from schemas.events import ErrorInfo, Timings, VideoInfo, VideoRequest, VideoResult

__all__ = ["Identity", "StageTimes", "completed", "failed", "not_started", "rejected", "undeliverable"]


@dataclass(frozen=True)
class Identity:
    """Who answers: stamped on every result. `degraded`: the worker renders the simpler kind of video (the template
    renderer), known from the loaded pipeline, never from anything a request carries."""

    worker_id: str
    model: str  # the checkpoint: `VIDGEN_MODEL`
    degraded: bool = False
    model_id: str | None = None  # its public id: `VIDGEN_MODEL_ID`


@dataclass
class StageTimes:
    """When one attempt's stages ran, filled in as they do; `timings` is what its result reports."""

    received_at: datetime
    render_started_at: datetime | None = None  # the model was taken (after any wait for the previous render)
    render_finished_at: datetime | None = None  # the model was released
    render_ms: int | None = None
    encode_ms: int | None = None
    upload_ms: int | None = None

    def timings(self, completed_at: datetime) -> Timings:
        return Timings(
            received_at=self.received_at,
            render_started_at=self.render_started_at,
            render_finished_at=self.render_finished_at,
            completed_at=completed_at,
            render_ms=self.render_ms,
            encode_ms=self.encode_ms,
            upload_ms=self.upload_ms,
        )


def not_started(received_at: datetime) -> Timings:
    """Timings of a request answered without starting its work (a rejection, a quota refusal, too large)."""
    return StageTimes(received_at).timings(completed_at=received_at)


def completed(
    request: VideoRequest,
    *,
    video: VideoInfo,
    cache_hit: bool,
    timings: Timings,
    attempt: int,
    identity: Identity,
    memory_mode: str | None = None,
    resumed_from_step: int | None = None,
) -> VideoResult:
    return _answer(
        request,
        identity,
        timings=timings,
        attempt=attempt,
        status="completed",
        memory_mode=memory_mode,
        video=video,
        cache_hit=cache_hit,
        resumed_from_step=resumed_from_step,
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
    return _answer(
        request,
        identity,
        timings=timings,
        attempt=attempt,
        status="rejected" if error.rejects else "failed",
        error=_error_info(error, retryable=error.retriable),
    )


def _answer(
    request: VideoRequest, identity: Identity, *, timings: Timings, attempt: int, **outcome: Any
) -> VideoResult:
    """A result for `request` answered by `identity`, with the outcome's own fields (status, video or error...)."""
    return VideoResult(
        request_id=request.request_id,
        tenant_id=request.tenant_id,
        metadata=dict(request.metadata),
        timings=timings,
        attempt=attempt,
        worker_id=identity.worker_id,
        model=identity.model,
        model_id=identity.model_id,
        degraded=identity.degraded,
        **outcome,
    )


def rejected(rejection: Rejection, *, received_at: datetime, identity: Identity) -> VideoResult:
    return VideoResult(
        request_id=rejection.request_id,
        tenant_id=rejection.tenant_id,
        status="rejected",
        error=_error_info(rejection.error, retryable=False),
        metadata=rejection.metadata,
        timings=not_started(received_at),
        worker_id=identity.worker_id,
        model=identity.model,
        model_id=identity.model_id,
        degraded=identity.degraded,
    )


def undeliverable(result: VideoResult, refusal: PublishRefused) -> VideoResult:
    """The minimal `failed` result that stands in for one the broker refused for good: who, when, and why, without
    the metadata or the video (whatever made the original too large), so it fits wherever results fit at all."""
    error = PublishRefused(f"the {result.status} result of this request could not be published: {refusal.message}")
    return VideoResult(
        request_id=result.request_id,
        tenant_id=result.tenant_id,
        status="failed",
        error=_error_info(error, retryable=False),
        timings=result.timings,
        attempt=result.attempt,
        worker_id=result.worker_id,
        model=result.model,
        model_id=result.model_id,
        degraded=result.degraded,
    )


def _error_info(error: VidgenError, *, retryable: bool) -> ErrorInfo:
    return ErrorInfo(
        code=error.code,
        message=shown(error.message, MAX_ERROR_MESSAGE_CHARS),
        retryable=retryable,
        field=None if error.field is None else shown(error.field, MAX_ERROR_FIELD_CHARS),
    )
