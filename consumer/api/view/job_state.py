"""A job's state from the events about it. Pure: no Kafka, no SQLite, no clock.

Events arrive from four topics read independently, so in any order and at least once: a result may come before its
request, a progress event after its result, the same result twice. The rules:

- a job exists once any event with a tenant names it; the request fills in its parameters whenever it comes;
- status only moves forward (`queued` -> `in_progress` -> terminal) and the first terminal result is final: a later
  one is ignored, and counted as `conflicting_result` when it says something else (a `failed` after `completed`);
- an event whose tenant is not the job's is ignored (`tenant_mismatch`);
- a job is `degraded` once its request was routed to the template pool (with the reason the API or the hook gave)
  or its result says so; it never stops being degraded;
- a job is `deleted` by its tenant's `delete` command (a cancel too, while it runs); it stays, hidden, so that
  events still on their way find it (and a late video can be deleted), until retention takes it;
- `version` grows by one with every visible change: it is the event stream's `id:`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from consumer.core.keys import CONTENT_FIELDS
from consumer.core.priority_lanes import Lane, lane_for
from schemas.events import ProgressPhase, VideoControl, VideoProgress, VideoRequest, VideoResult
from schemas.job_api import API_FILLED_FIELDS, DegradedReason, Fallback

__all__ = [
    "TERMINAL",
    "Answered",
    "CancelRequested",
    "Event",
    "IgnoredEvent",
    "JobState",
    "Progressed",
    "Submitted",
    "ViewStatus",
    "apply",
    "may_share_video",
    "request_parameters",
    "service_seconds",
]

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "rejected"})
# The parameters that decide a video's bytes (with the model): jobs of one tenant equal in them share its objects.
_CONTENT = (*CONTENT_FIELDS, "seed")
_RANK = {"queued": 0, "in_progress": 1, "completed": 2, "failed": 2, "rejected": 2}

ViewStatus = Literal["queued", "in_progress", "completed", "failed", "rejected"]
"""A job's status in the view, the worker's own: the API answers `rejected` as OpenAI's `failed`."""
IgnoredReason = Literal["tenant_mismatch", "duplicate_result", "conflicting_result", "after_terminal", "unknown_job"]


@dataclass(frozen=True)
class JobState:
    id: str
    tenant_id: str
    status: ViewStatus
    progress: int
    attempt: int
    created_at: datetime
    updated_at: datetime
    version: int
    request: dict[str, Any] | None = None  # the accepted parameters (request_parameters)
    result: dict[str, Any] | None = None  # the terminal VideoResult as JSON data
    cancel_requested_at: datetime | None = None
    degraded: bool = False  # routed to the template pool, or answered by it
    degraded_reason: DegradedReason | None = None  # why it was routed there, when the router said
    model: str | None = None  # the public id of the model asked for (None: not known from the events)
    deleted_at: datetime | None = None  # when its tenant deleted it: hidden from then on
    phase: ProgressPhase | None = None  # what its worker last said it was doing (None: no progress event yet)
    step: int | None = None  # denoising steps done, as its worker last said
    total: int | None = None  # denoising steps in all
    image_print: str | None = None  # its uploaded start image's print (`consumer.core.similar.ImagePrint.text`)
    fallback: Fallback | None = None  # its fallback choice, as the API that accepted it said (None: not known)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def lane(self) -> Lane:
        """The accepted request's `priority`; interactive while it says none (or has not been read yet)."""
        return lane_for(self.request.get("priority") if self.request is not None else None)


@dataclass(frozen=True)
class Submitted:
    request: VideoRequest
    at: datetime
    degraded: bool = False  # published to the template pool's topic
    degraded_reason: DegradedReason | None = None
    model: str | None = None  # the public id of the model asked for
    image_print: str | None = None  # the print of its uploaded start image, when the API gave one
    fallback: Fallback | None = None  # its fallback choice, when the API gave one

    @property
    def job_id(self) -> str:
        return self.request.request_id


@dataclass(frozen=True)
class Progressed:
    progress: VideoProgress
    at: datetime

    @property
    def job_id(self) -> str:
        return self.progress.request_id


@dataclass(frozen=True)
class Answered:
    result: VideoResult
    at: datetime
    degraded_reason: DegradedReason | None = None  # the API's own answers (a similar video) say why on the record

    @property
    def job_id(self) -> str:
        return self.result.request_id


@dataclass(frozen=True)
class CancelRequested:
    control: VideoControl
    at: datetime

    @property
    def job_id(self) -> str:
        return self.control.request_id


Event = Submitted | Progressed | Answered | CancelRequested


@dataclass(frozen=True)
class IgnoredEvent:
    """The event changes nothing and says something worth counting."""

    reason: IgnoredReason


def request_parameters(request: VideoRequest) -> dict[str, Any]:
    """The parameters as accepted: the request without the fields the API fills in, as JSON data."""
    return request.model_dump(mode="json", exclude=set(API_FILLED_FIELDS), exclude_none=True)


def apply(state: JobState | None, event: Event) -> JobState | IgnoredEvent | None:
    """The job after `event`: a new state, `IgnoredEvent` (with why), or None when nothing visible changed."""
    if isinstance(event, Submitted):
        return _submitted(state, event)
    if isinstance(event, Progressed):
        return _progressed(state, event)
    if isinstance(event, Answered):
        return _answered(state, event)
    return _cancel_requested(state, event)


def _new(job_id: str, tenant_id: str, at: datetime, status: ViewStatus) -> JobState:
    return JobState(
        id=job_id,
        tenant_id=tenant_id,
        status=status,
        progress=0,
        attempt=1,
        created_at=at,
        updated_at=at,
        version=0,  # _changed() makes it 1
    )


def _changed(state: JobState, at: datetime, **changes: Any) -> JobState:
    return dataclasses.replace(state, updated_at=max(at, state.updated_at), version=state.version + 1, **changes)


def _submitted(state: JobState | None, event: Submitted) -> JobState | IgnoredEvent | None:
    request = event.request
    if state is None:
        state = _new(request.request_id, request.tenant_id, event.at, "queued")
    elif state.tenant_id != request.tenant_id:
        return IgnoredEvent("tenant_mismatch")
    elif state.request is not None:
        return None  # the API's own write, then the record itself; or a duplicate
    # A job first seen through its progress or result was created at that event: the request is earlier.
    return _changed(
        state,
        event.at,
        request=request_parameters(request),
        created_at=min(event.at, state.created_at),
        degraded=state.degraded or event.degraded,
        degraded_reason=state.degraded_reason or event.degraded_reason,
        model=state.model or event.model,
        image_print=state.image_print or event.image_print,
        fallback=state.fallback or event.fallback,
    )


def _progressed(state: JobState | None, event: Progressed) -> JobState | IgnoredEvent | None:
    progress = event.progress
    if state is None:
        state = _new(progress.request_id, progress.tenant_id, event.at, "in_progress")
    elif state.tenant_id != progress.tenant_id:
        return IgnoredEvent("tenant_mismatch")
    elif state.terminal:
        return IgnoredEvent("after_terminal")  # a late or redelivered progress event
    if progress.attempt < state.attempt:
        return None  # from an attempt that has been superseded
    # Below 100 until the result: a worker that sends no phase reports 100 at its last denoising step.
    percent = min(int(progress.percent), 99)
    phase = progress.phase or ("denoising" if progress.step else "preparing")
    where = (phase, progress.step, progress.total)
    # Within an attempt progress only grows (events of one request may be read out of order after a retry).
    if progress.attempt == state.attempt and state.status == "in_progress":
        if percent < state.progress:
            return None
        if state.version and (percent, where) == (state.progress, (state.phase, state.step, state.total)):
            return None
    return _changed(
        state,
        event.at,
        status="in_progress",
        progress=percent,
        attempt=progress.attempt,
        phase=phase,
        step=progress.step,
        total=progress.total,
    )


def _answered(state: JobState | None, event: Answered) -> JobState | IgnoredEvent | None:
    result = event.result
    if result.tenant_id is None:
        return IgnoredEvent("tenant_mismatch")  # the request's tenant was unusable: nobody can own the job
    if state is None:
        state = _new(result.request_id, result.tenant_id, event.at, "queued")
    elif state.tenant_id != result.tenant_id:
        return IgnoredEvent("tenant_mismatch")
    elif state.terminal:
        same = state.result is not None and state.result.get("status") == result.status
        return IgnoredEvent("duplicate_result" if same else "conflicting_result")
    progress = 100 if result.status == "completed" else state.progress
    return _changed(
        state,
        event.at,
        status=result.status,
        progress=progress,
        attempt=max(state.attempt, result.attempt),
        result=result.model_dump(mode="json"),
        degraded=state.degraded or result.degraded,
        degraded_reason=state.degraded_reason or event.degraded_reason,
    )


def _cancel_requested(state: JobState | None, event: CancelRequested) -> JobState | IgnoredEvent | None:
    control = event.control
    if state is None:
        if control.action != "delete":
            return IgnoredEvent("unknown_job")
        # Read before the job's request (the topics are read independently): the request fills it in later.
        state = _new(control.request_id, control.tenant_id, event.at, "queued")
    elif state.tenant_id != control.tenant_id:
        return IgnoredEvent("tenant_mismatch")
    cancel = state.cancel_requested_at or (None if state.terminal else control.requested_at)
    if control.action == "delete":
        if state.deleted_at is not None:
            return None
        return _changed(state, event.at, cancel_requested_at=cancel, deleted_at=event.at)
    if cancel == state.cancel_requested_at:
        return None
    return _changed(state, event.at, cancel_requested_at=cancel)


def service_seconds(result: VideoResult) -> float | None:
    """How long a GPU worker spent on a rendered job (render start to result), for the GPU pool's wait estimate; None
    when nothing was rendered (a cache hit, a rejection) or the template pool answered."""
    started = result.timings.render_started_at
    if result.status != "completed" or result.cache_hit or result.degraded or started is None:
        return None
    return max(0.0, (result.timings.completed_at - started).total_seconds())


def may_share_video(deleted: JobState, other: JobState, video_uri: str) -> bool:
    """Whether `other` (a job of the same tenant) shows, or may yet show, the video `deleted` has at `video_uri`:
    its result names it, or it is still queued or rendering and asks for the same content (the worker's cache
    would answer it with those objects) or its request is not known yet (it might)."""
    result = other.result
    if result is not None and (result.get("video") or {}).get("uri") == video_uri:
        return True
    if other.terminal:
        return False
    if other.request is None or deleted.request is None:
        return True
    same = all(other.request.get(name) == deleted.request.get(name) for name in _CONTENT)
    return same and other.model == deleted.model
