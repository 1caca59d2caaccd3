"""The job API's shedding and wait estimate respect the priority lanes: workers take interactive work first, so an
interactive job waits only behind the interactive jobs queued (and every job rendering, which holds a worker) and a
bulk backlog never sheds or degrades it; a bulk job waits behind everything. The view counts its active jobs per
lane (from the accepted request's `priority`), and a view file from before the lane column is upgraded in place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.api.submission.shedding import Limits, shed
from consumer.api.submission.wait_estimate import QueueStats, TenantQueue, estimated_wait_s
from consumer.api.view.job_state import Progressed, Submitted
from consumer.api.view.job_store import JobStore
from consumer.core.priority_lanes import Lane
from schemas.events import Priority, VideoProgress, VideoRequest

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def alone(queued: int, bulk_queued: int, in_progress: int, *, workers_active: int, service_s: float) -> QueueStats:
    """Every job of one tenant's (shop-1), so the lanes alone are at work here (tenants: test_fair_queue.py)."""
    return QueueStats(
        queued=queued,
        bulk_queued=bulk_queued,
        in_progress=in_progress,
        workers_active=workers_active,
        service_s=service_s,
        tenants={"shop-1": TenantQueue(queued=queued, bulk_queued=bulk_queued, in_progress=in_progress)},
    )


# A catalog import: 50 bulk jobs queued behind 2 interactive ones, one bulk job rendering on the one worker.
BACKLOG = alone(52, 50, 1, workers_active=1, service_s=10)


def limits(max_queued: int, max_wait_s: float) -> Limits:
    """The same limits for the pool and the tenant; strict priority (no bulk share)."""
    return Limits(
        max_queued=max_queued, max_wait_s=max_wait_s, tenant_max_queued=max_queued, tenant_max_wait_s=max_wait_s
    )


def wait(stats: QueueStats, lane: Lane) -> float | None:
    return estimated_wait_s(stats, "shop-1", lane, bulk_period=None)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def submitted(job_id: str, seconds: float, priority: Priority | None = None, *, template: bool = False) -> Submitted:
    request = VideoRequest(request_id=job_id, tenant_id="shop-1", prompt="a lamp", priority=priority)
    return Submitted(request, at(seconds), degraded=template, degraded_reason="busy" if template else None)


def started(job_id: str, seconds: float) -> Progressed:
    progress = VideoProgress(
        request_id=job_id,
        tenant_id="shop-1",
        event="progress",
        step=1,
        total=4,
        percent=25,
        worker_id="gpu-1",
        at=at(seconds),
    )
    return Progressed(progress, at(seconds))


def test_an_interactive_job_waits_only_behind_interactive_jobs_queued_and_jobs_rendering() -> None:
    assert wait(BACKLOG, "interactive") == 30.0  # (2 queued + 1 rendering) / 1 worker x 10 s
    assert shed(BACKLOG, tenant="shop-1", lane="interactive", limits=limits(10, 60)) is None


def test_a_bulk_job_waits_behind_everything_and_is_shed_by_the_backlog() -> None:
    assert wait(BACKLOG, "bulk") == 530.0
    full = shed(BACKLOG, tenant="shop-1", lane="bulk", limits=limits(10, 1e9))
    assert full is not None and full.reason == "queue_full" and "you have 52 jobs queued" in full.message
    slow = shed(BACKLOG, tenant="shop-1", lane="bulk", limits=limits(100, 60))
    assert slow is not None and slow.reason == "wait_too_long" and slow.retry_after_s == 300  # capped


def test_interactive_jobs_still_shed_at_their_own_limits() -> None:
    busy = alone(12, 2, 2, workers_active=1, service_s=10)
    full = shed(busy, tenant="shop-1", lane="interactive", limits=limits(10, 1e9))
    assert full is not None and full.reason == "queue_full" and "you have 10 interactive jobs queued" in full.message
    slow = shed(busy, tenant="shop-1", lane="interactive", limits=limits(100, 60))
    assert slow is not None and slow.reason == "wait_too_long" and slow.retry_after_s == 60  # 120 s - 60 s
    idle = alone(50, 50, 0, workers_active=0, service_s=60)
    assert wait(idle, "interactive") is None  # no worker seen: only the queue limit
    assert shed(idle, tenant="shop-1", lane="interactive", limits=limits(1, 1)) is None


async def test_the_view_counts_active_jobs_per_lane(tmp_path: Path) -> None:
    path = tmp_path / "view.sqlite3"
    store = JobStore(str(path))
    await store.open()
    try:
        await store.apply(
            [
                submitted("int-a", 0),
                submitted("int-b", 1, "interactive"),
                submitted("bulk-a", 2, "bulk"),
                submitted("bulk-b", 3, "bulk"),
                submitted("bulk-tpl", 4, "bulk", template=True),
            ]
        )
        stats = store.queue_stats(now=at(5), active_s=60, default_service_s=10)
        assert (stats.queued, stats.bulk_queued, stats.in_progress, stats.template_queued) == (4, 2, 0, 1)
        await store.apply([started("bulk-a", 6)], workers={"gpu-1": at(6)})  # a bulk job holds the worker
        stats = store.queue_stats(now=at(7), active_s=60, default_service_s=10)
        assert (stats.queued, stats.bulk_queued, stats.in_progress) == (3, 1, 1)
        assert (wait(stats, "interactive"), wait(stats, "bulk")) == (30.0, 40.0)
    finally:
        await store.close()
    reopened = JobStore(str(path))
    await reopened.open()
    try:
        stats = reopened.queue_stats(now=at(7), active_s=60, default_service_s=10)
        assert (stats.queued, stats.bulk_queued, stats.in_progress) == (3, 1, 1)
    finally:
        await reopened.close()


async def test_a_view_file_from_before_lanes_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:  # the schema with the degraded columns, before the lane column
        old.executescript(
            """
            CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, status TEXT NOT NULL,
                progress INTEGER NOT NULL, attempt INTEGER NOT NULL, created_at REAL NOT NULL,
                updated_at REAL NOT NULL, version INTEGER NOT NULL, request TEXT, result TEXT,
                cancel_requested_at REAL, degraded INTEGER NOT NULL DEFAULT 0, degraded_reason TEXT);
            CREATE TABLE workers (worker_id TEXT PRIMARY KEY, last_seen REAL NOT NULL,
                template INTEGER NOT NULL DEFAULT 0);
            """
        )
        for job_id, request in (
            ("vid-bulk", '{"prompt": "a lamp", "priority": "bulk"}'),
            ("vid-interactive", '{"prompt": "a lamp"}'),
            ("vid-unknown", None),  # a result seen before its request: no lane known yet
        ):
            old.execute(
                "INSERT INTO jobs VALUES (?, 'shop-1', 'queued', 0, 1, ?, ?, 1, ?, NULL, NULL, 0, NULL)",
                (job_id, at(0).timestamp(), at(0).timestamp(), request),
            )
    store = JobStore(str(path))
    await store.open()
    try:
        stats = store.queue_stats(now=at(1), active_s=60, default_service_s=10)
        assert (stats.queued, stats.bulk_queued) == (3, 1)
        await store.apply([started("vid-bulk", 2)])  # the counts move from the upgraded rows' lanes
        stats = store.queue_stats(now=at(3), active_s=60, default_service_s=10)
        assert (stats.queued, stats.bulk_queued, stats.in_progress) == (2, 0, 1)
    finally:
        await store.close()
