"""Job state from events in any order and any number of times: pure, no broker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.api.view.job_state import (
    Answered,
    CancelRequested,
    IgnoredEvent,
    JobState,
    Progressed,
    Submitted,
    apply,
    may_share_video,
    request_parameters,
    service_seconds,
)
from schemas.events import VideoControl, VideoProgress, VideoRequest, VideoResult

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _request(tenant: str = "shop-1") -> Submitted:
    request = VideoRequest(request_id="vid-1", tenant_id=tenant, prompt="a shoe", width=256, height=256)
    return Submitted(request, _at(0))


def _progress(percent: float, *, attempt: int = 1, tenant: str = "shop-1", at: float = 1) -> Progressed:
    progress = VideoProgress(
        request_id="vid-1",
        tenant_id=tenant,
        event="progress",
        step=int(percent),
        total=100,
        percent=percent,
        attempt=attempt,
        worker_id="w1",
        at=_at(at),
    )
    return Progressed(progress, _at(at))


def _result(status: str = "completed", *, tenant: str | None = "shop-1", at: float = 5, **extra: Any) -> Answered:
    body: dict[str, Any] = {
        "request_id": "vid-1",
        "tenant_id": tenant,
        "status": status,
        "timings": {"received_at": _at(0), "render_started_at": _at(2), "completed_at": _at(at)},
        "worker_id": "w1",
        "model": "tiny",
        **extra,
    }
    if status != "completed":
        body["error"] = {"code": "render_failed", "message": "boom", "retryable": False}
    return Answered(VideoResult.model_validate(body), _at(at))


def _run(*events: Any) -> tuple[JobState | None, list[str]]:
    state: JobState | None = None
    ignored = []
    for event in events:
        after = apply(state, event)
        if isinstance(after, IgnoredEvent):
            ignored.append(after.reason)
        elif after is not None:
            state = after
    return state, ignored


def test_request_progress_result_in_order() -> None:
    state, ignored = _run(_request(), _progress(40), _progress(80, at=2), _result())
    assert state is not None and not ignored
    assert (state.status, state.progress, state.version) == ("completed", 100, 4)
    assert state.request == {**request_parameters(_request().request)}
    assert state.created_at == _at(0) and state.updated_at == _at(5)


def test_result_before_request_keeps_the_result_and_fills_in_the_parameters() -> None:
    state, _ = _run(_result(), _request())
    assert state is not None
    assert state.status == "completed" and state.request is not None
    assert state.created_at == _at(0)  # the request is earlier than the result that created the row


def test_duplicate_and_conflicting_results_never_regress_and_are_counted() -> None:
    state, ignored = _run(_request(), _result("completed"), _result("completed"), _result("failed"), _progress(10))
    assert state is not None and state.status == "completed" and state.progress == 100
    assert ignored == ["duplicate_result", "conflicting_result", "after_terminal"]


def test_progress_only_grows_within_an_attempt_and_restarts_with_a_new_one() -> None:
    state, _ = _run(_request(), _progress(60), _progress(30, at=2))
    assert state is not None and state.progress == 60
    state, _ = _run(_request(), _progress(60), _progress(10, attempt=2, at=3), _progress(90, attempt=1, at=4))
    assert state is not None and (state.progress, state.attempt) == (10, 2)


def test_events_of_another_tenant_are_ignored() -> None:
    state, ignored = _run(_request(), _progress(50, tenant="shop-2"), _result(tenant="shop-2"), _request("shop-2"))
    assert state is not None and state.status == "queued"
    assert ignored == ["tenant_mismatch"] * 3


def test_cancel_is_recorded_once_and_only_for_the_owner() -> None:
    def cancel(tenant: str) -> CancelRequested:
        control = VideoControl(action="cancel", request_id="vid-1", tenant_id=tenant, requested_at=_at(3))
        return CancelRequested(control, _at(3))

    state, ignored = _run(cancel("shop-1"), _request(), cancel("shop-2"), cancel("shop-1"))
    assert state is not None and state.cancel_requested_at == _at(3) and state.version == 2
    assert ignored == ["unknown_job", "tenant_mismatch"]


def test_a_result_without_tenant_makes_no_job() -> None:
    assert _run(_result(tenant=None))[0] is None


def test_service_seconds_counts_rendered_jobs_only() -> None:
    assert service_seconds(_result().result) == 3.0
    assert service_seconds(_result(cache_hit=True).result) is None
    assert service_seconds(_result("failed").result) is None


def _control(action: str, *, tenant: str = "shop-1", at: float = 3) -> CancelRequested:
    control = VideoControl.model_validate(
        {"action": action, "request_id": "vid-1", "tenant_id": tenant, "requested_at": _at(at)}
    )
    return CancelRequested(control, _at(at))


def test_a_delete_hides_the_job_cancels_it_while_it_runs_and_happens_once() -> None:
    state, ignored = _run(_request(), _progress(40), _control("delete"), _control("delete", at=4))
    assert state is not None and not ignored
    assert (state.deleted_at, state.cancel_requested_at, state.version) == (_at(3), _at(3), 3)
    state, _ = _run(_request(), _result(), _control("delete", at=9))
    assert state is not None and state.deleted_at == _at(9) and state.cancel_requested_at is None  # had ended
    state, ignored = _run(_request(), _control("delete", tenant="shop-2"))
    assert state is not None and state.deleted_at is None and ignored == ["tenant_mismatch"]


def test_a_delete_read_before_its_request_keeps_the_job_deleted_when_the_request_comes() -> None:
    state, ignored = _run(_control("delete", at=1), _request(), _result(at=6))
    assert state is not None and not ignored
    assert state.deleted_at == _at(1) and state.request is not None and state.status == "completed"
    assert _run(_control("cancel"))[1] == ["unknown_job"]  # a plain cancel of an unknown job stays ignored


def test_a_cancel_after_the_end_keeps_the_cancel_time_it_had() -> None:
    state, _ = _run(_request(), _control("cancel", at=2), _result(at=5), _control("delete", at=7))
    assert state is not None and state.cancel_requested_at == _at(2) and state.deleted_at == _at(7)


def _shown(uri: str | None = None, *, status: str = "completed", **request: Any) -> JobState:
    result = {"video": {"uri": uri}} if uri is not None else None
    parameters = {**request_parameters(_request().request), **request}
    return JobState(
        id="vid-2",
        tenant_id="shop-1",
        status=status,  # type: ignore[arg-type]  # a status of the view, checked by the test's cases
        progress=0,
        attempt=1,
        created_at=_at(0),
        updated_at=_at(0),
        version=1,
        request=parameters,
        result=result,
        model="easyanimate-v5.1",
    )


def test_another_job_shares_a_video_when_it_shows_it_or_may_yet_be_given_it() -> None:
    deleted = _shown("s3://b/videos/x.mp4")
    assert may_share_video(deleted, _shown("s3://b/videos/x.mp4"), "s3://b/videos/x.mp4")
    assert not may_share_video(deleted, _shown("s3://b/videos/y.mp4"), "s3://b/videos/x.mp4")
    assert not may_share_video(deleted, _shown(status="failed"), "s3://b/videos/x.mp4")
    # Queued or rendering: the same content would be a cache hit of the deleted job's objects.
    assert may_share_video(deleted, _shown(status="queued", metadata={"sku": "9"}), "s3://b/videos/x.mp4")
    assert not may_share_video(deleted, _shown(status="queued", prompt="a hat"), "s3://b/videos/x.mp4")
    assert not may_share_video(deleted, _shown(status="in_progress", seed=7), "s3://b/videos/x.mp4")
    unknown = dataclasses.replace(_shown(status="queued"), request=None)
    assert may_share_video(deleted, unknown, "s3://b/videos/x.mp4")  # its request is not known yet: it might
    other_model = dataclasses.replace(_shown(status="queued"), model="template")
    assert not may_share_video(deleted, other_model, "s3://b/videos/x.mp4")
