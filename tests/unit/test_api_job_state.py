"""Job state from events in any order and any number of times: pure, no broker."""

from __future__ import annotations

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
