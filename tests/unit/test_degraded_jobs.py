"""Degraded jobs in the job API's view, without a broker: a job routed to the template pool is `degraded` (with the
reason the router gave) from its request on, the pools' queues are counted apart, template workers never count as
GPU activity, and a view file written before these columns existed is upgraded in place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumer.api.view.job_state import Answered, Event, JobState, Progressed, Submitted, apply, service_seconds
from consumer.api.view.job_store import JobStore
from schemas.events import VideoProgress, VideoRequest, VideoResult

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def submitted(job_id: str, seconds: float, *, template: bool = False, reason: Any = None) -> Submitted:
    request = VideoRequest(request_id=job_id, tenant_id="shop-1", prompt="a lamp")
    return Submitted(request, at(seconds), degraded=template, degraded_reason=reason)


def progressed(job_id: str, seconds: float, worker: str) -> Progressed:
    progress = VideoProgress(
        request_id=job_id,
        tenant_id="shop-1",
        event="progress",
        step=1,
        total=4,
        percent=25,
        worker_id=worker,
        at=at(seconds),
    )
    return Progressed(progress, at(seconds))


def answered(job_id: str, seconds: float, worker: str, *, degraded: bool = False) -> Answered:
    result = VideoResult.model_validate(
        {
            "request_id": job_id,
            "tenant_id": "shop-1",
            "status": "completed",
            "timings": {"received_at": at(0), "render_started_at": at(seconds - 2), "completed_at": at(seconds)},
            "worker_id": worker,
            "model": "template" if degraded else "tiny",
            "degraded": degraded,
        }
    )
    return Answered(result, at(seconds))


def changed(state: JobState | None, event: Event) -> JobState:
    after = apply(state, event)
    assert isinstance(after, JobState)
    return after


def test_a_job_routed_to_the_template_pool_is_degraded_from_its_request_on() -> None:
    state = changed(None, submitted("vid-1", 0, template=True, reason="busy"))
    assert (state.status, state.degraded, state.degraded_reason) == ("queued", True, "busy")
    assert apply(state, submitted("vid-1", 1, template=True, reason="busy")) is None  # the record after the API's own
    assert changed(state, progressed("vid-1", 2, "tpl-1")).degraded


def test_a_degraded_result_marks_a_job_degraded_whoever_published_its_request() -> None:
    """A backend may publish straight to the template topic (no reason), and a result may arrive first."""
    state = changed(None, answered("vid-1", 5, "tpl-1", degraded=True))
    assert state.degraded and state.degraded_reason is None
    later = changed(state, submitted("vid-1", 0, template=True))
    assert later.degraded and later.degraded_reason is None and later.created_at == at(0)
    assert not changed(None, answered("vid-2", 5, "gpu-1")).degraded


def test_template_renders_never_feed_the_gpu_pools_wait_estimate() -> None:
    assert service_seconds(answered("vid-1", 5, "gpu-1").result) == 2.0
    assert service_seconds(answered("vid-1", 5, "tpl-1", degraded=True).result) is None


async def test_queues_and_activity_are_counted_per_pool(tmp_path: Path) -> None:
    store = JobStore(str(tmp_path / "view.sqlite3"))
    await store.open()
    try:
        await store.apply(
            [submitted("gpu-a", 0), submitted("gpu-b", 10), submitted("tpl-a", 5, template=True, reason="pool_down")]
        )
        stats = store.queue_stats(now=at(20), active_s=60, default_service_s=30)
        assert (stats.queued, stats.template_queued, stats.workers_active) == (2, 1, 0)
        assert (stats.waiting_since, stats.last_active) == (at(0), None)  # the oldest GPU job, no GPU worker yet

        # The template pool answers its job: its worker is no GPU activity, before and after its first answer.
        await store.apply([progressed("tpl-a", 21, "tpl-1")], workers={"tpl-1": at(21)})
        await store.apply([answered("tpl-a", 22, "tpl-1", degraded=True)], workers={"tpl-1": at(22)})
        await store.apply([], workers={"tpl-1": at(23)})  # e.g. progress on a job this batch does not name
        stats = store.queue_stats(now=at(24), active_s=60, default_service_s=30)
        assert (stats.template_queued, stats.workers_active, stats.last_active, stats.service_s) == (0, 0, None, 30)

        # A GPU worker starts the oldest GPU job: activity, and the oldest waiting is the next one.
        await store.apply([progressed("gpu-a", 30, "gpu-1")], workers={"gpu-1": at(30)})
        stats = store.queue_stats(now=at(31), active_s=60, default_service_s=30)
        assert (stats.queued, stats.in_progress, stats.workers_active) == (1, 1, 1)
        assert (stats.last_active, stats.waiting_since) == (at(30), at(10))
    finally:
        await store.close()

    reopened = JobStore(str(tmp_path / "view.sqlite3"))
    await reopened.open()
    try:
        stats = reopened.queue_stats(now=at(31), active_s=60, default_service_s=30)
        assert (stats.queued, stats.template_queued, stats.workers_active) == (1, 0, 1)
        assert (stats.last_active, stats.waiting_since) == (at(30), at(10))
        job = await reopened.get("shop-1", "tpl-a")
        assert job is not None and (job.degraded, job.degraded_reason, job.status) == (True, "pool_down", "completed")
    finally:
        await reopened.close()


async def test_a_view_file_from_before_degradation_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:  # the schema of the first release
        old.executescript(
            """
            CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, status TEXT NOT NULL,
                progress INTEGER NOT NULL, attempt INTEGER NOT NULL, created_at REAL NOT NULL,
                updated_at REAL NOT NULL, version INTEGER NOT NULL, request TEXT, result TEXT,
                cancel_requested_at REAL);
            CREATE TABLE workers (worker_id TEXT PRIMARY KEY, last_seen REAL NOT NULL);
            """
        )
        old.execute(
            "INSERT INTO jobs VALUES ('vid-old', 'shop-1', 'queued', 0, 1, ?, ?, 1, NULL, NULL, NULL)",
            (at(0).timestamp(), at(0).timestamp()),
        )
        old.execute("INSERT INTO workers VALUES ('gpu-1', ?)", (at(1).timestamp(),))
    store = JobStore(str(path))
    await store.open()
    try:
        job = await store.get("shop-1", "vid-old")
        assert job is not None and (job.degraded, job.degraded_reason) == (False, None)
        stats = store.queue_stats(now=at(2), active_s=60, default_service_s=30)
        assert (stats.queued, stats.workers_active, stats.waiting_since) == (1, 1, at(0))
        await store.apply([submitted("vid-new", 3, template=True, reason="busy")])
        assert store.queue_stats(now=at(4), active_s=60, default_service_s=30).template_queued == 1
    finally:
        await store.close()
