"""A job's progress moves through the worker's phases, weighted by their shares, and reaches 100 only when completed."""

from __future__ import annotations

from typing import get_args

from consumer.core.cloud_events import progress_event
from consumer.core.progress_phases import PHASE_SHARES, ended_phase, id_parts, step_phase, work_percent
from consumer.core.webhook_events import progress_webhook_event
from schemas.events import ProgressPhase, VideoProgress


def test_the_shares_cover_every_phase_and_add_up_to_100() -> None:
    assert set(PHASE_SHARES) == set(get_args(ProgressPhase))
    assert sum(PHASE_SHARES.values()) == 100


def test_progress_grows_through_the_phases_and_stays_below_100() -> None:
    points = [("preparing", 0), *[("denoising", step) for step in range(1, 12)], ("decoding", 12)]
    points += [("encoding", 12), ("uploading", 12)]
    values = [work_percent(phase, step, 12) for phase, step in points]  # type: ignore[arg-type]
    assert values == sorted(values)
    assert values[0] == 0
    assert values[-1] == 100 - PHASE_SHARES["uploading"]
    # The last denoising step is not the end: decoding, encoding and uploading are still ahead.
    assert work_percent("decoding", 12, 12) == PHASE_SHARES["preparing"] + PHASE_SHARES["denoising"]


def test_the_last_step_starts_decoding() -> None:
    assert [step_phase(step, 4) for step in (1, 3, 4)] == ["denoising", "denoising", "decoding"]


def test_a_cancel_ends_neutrally_and_other_failures_fail() -> None:
    assert ended_phase("completed", None) == "completed"
    assert ended_phase("failed", "cancelled") == "cancelled"
    assert ended_phase("failed", "render_failed") == "failed"
    assert ended_phase("rejected", "invalid_field") == "failed"


def test_the_phases_after_the_last_step_have_ids_of_their_own() -> None:
    base = {"request_id": "r-1", "tenant_id": "t", "event": "progress", "step": 4, "total": 4, "worker_id": "w"}
    events = [
        VideoProgress.model_validate({**base, "percent": 6, "phase": phase, "at": "2026-12-01T12:00:00Z"})
        for phase in ("decoding", "encoding", "uploading")
    ]
    ids = {dict(progress_event(event, source="s"))["ce_id"] for event in events}
    assert len(ids) == 3
    hooks = {progress_webhook_event(endpoint_id="e", progress=event).id for event in events}
    assert len(hooks) == 3
    # A step's id is as it was before phases were reported.
    assert id_parts("denoising") == id_parts("decoding") == id_parts(None) == ()
