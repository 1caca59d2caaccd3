"""The view's per-tenant figures on a real SQLite file, without a broker (issue 22, findings 3 and 6): active jobs
counted per tenant as events arrive and after a reopen; at most `tenant_max_jobs` jobs kept per tenant, the tenant's
least recently updated terminal jobs going first and never a queued or rendering one, when jobs are added and at
purge (not when a job ends); and the queries behind both use an index."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import view_size
from consumer.api.submission.wait_estimate import TenantQueue
from consumer.api.view.job_state import Answered, Progressed, Submitted
from consumer.api.view.job_store import JobStore
from consumer.api.view.pages import PageQuery
from consumer.api.view.retention import _OLDEST_TERMINAL
from consumer.api.view.schema import connect
from schemas.events import Priority, VideoProgress, VideoRequest, VideoResult

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EVERY_JOB = PageQuery(limit=100, after=None)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def submitted(job_id: str, seconds: float, tenant: str = "shop-a", priority: Priority | None = None) -> Submitted:
    return Submitted(VideoRequest(request_id=job_id, tenant_id=tenant, prompt="a lamp", priority=priority), at(seconds))


def started(job_id: str, seconds: float, tenant: str = "shop-a") -> Progressed:
    progress = VideoProgress(
        request_id=job_id, tenant_id=tenant, event="started", step=0, total=4, percent=0, worker_id="gpu-1", at=at(0)
    )
    return Progressed(progress, at(seconds))


def completed(job_id: str, seconds: float, tenant: str = "shop-a") -> Answered:
    result = VideoResult.model_validate(
        {
            "request_id": job_id,
            "tenant_id": tenant,
            "status": "completed",
            "timings": {"received_at": at(0), "completed_at": at(seconds)},
            "worker_id": "gpu-1",
            "model": "tiny",
        }
    )
    return Answered(result, at(seconds))


async def test_active_jobs_are_counted_per_tenant_and_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "view.sqlite3")
    store = JobStore(path)
    await store.open()
    try:
        await store.apply(
            [
                submitted("a-1", 0),
                submitted("a-2", 1),
                submitted("b-1", 2, "shop-b"),
                submitted("b-2", 3, "shop-b", "bulk"),
                submitted("b-3", 4, "shop-b"),
            ]
        )
        await store.apply([started("b-1", 5, "shop-b"), completed("a-1", 6)], workers={"gpu-1": at(6)})
        stats = store.queue_stats(now=at(7), active_s=60, default_service_s=10)
        expected = {
            "shop-a": TenantQueue(queued=1),
            "shop-b": TenantQueue(queued=2, bulk_queued=1, in_progress=1),
        }
        assert stats.tenants == expected
        await store.apply([completed("a-2", 8)])
        assert "shop-a" not in store.queue_stats(now=at(9), active_s=60, default_service_s=10).tenants
    finally:
        await store.close()
    reopened = JobStore(path)
    await reopened.open()
    try:
        assert reopened.queue_stats(now=at(9), active_s=60, default_service_s=10).tenants == {
            "shop-b": expected["shop-b"]
        }
    finally:
        await reopened.close()


async def test_a_tenant_keeps_at_most_its_cap_of_jobs_oldest_terminal_first(tmp_path: Path) -> None:
    path = str(tmp_path / "view.sqlite3")
    store = JobStore(path, tenant_max_jobs=3)
    await store.open()
    try:
        await store.apply([submitted("b-1", 0, "shop-b"), completed("b-1", 1, "shop-b")])
        await store.apply([submitted(f"a-{n}", n) for n in range(4)])  # 4 queued: none may go
        assert [await store.get("shop-a", f"a-{n}") is not None for n in range(4)] == [True] * 4
        # a-2 ends before a-0 and a-1: it has been terminal longest. Ending adds no job: nothing goes yet.
        await store.apply([completed("a-2", 10), completed("a-0", 11), completed("a-1", 12)])
        assert [await store.get("shop-a", f"a-{n}") is not None for n in range(4)] == [True] * 4
        outcome = await store.apply([submitted("a-4", 13)])  # 5 jobs: the 2 terminal longest go
        assert sorted(outcome.removed) == ["a-0", "a-2"]
        assert [await store.get("shop-a", f"a-{n}") is None for n in (0, 2)] == [True, True]  # not kept in memory
        outcome = await store.apply([submitted("a-5", 14)])
        assert outcome.removed == ["a-1"]
        kept = await store.page("shop-a", EVERY_JOB)
        assert kept is not None and sorted(job.id for job in kept) == ["a-3", "a-4", "a-5"]  # all queued now
        assert await store.get("shop-b", "b-1") is not None  # another tenant's jobs are not counted against it
    finally:
        await store.close()
    reopened = JobStore(path, tenant_max_jobs=3)  # the counts are read back from the file
    await reopened.open()
    try:
        await reopened.apply([completed("a-3", 20), submitted("a-6", 21)])
        kept = await reopened.page("shop-a", EVERY_JOB)
        assert kept is not None and sorted(job.id for job in kept) == ["a-4", "a-5", "a-6"]
    finally:
        await reopened.close()


async def test_purge_brings_every_tenant_under_a_lowered_cap(tmp_path: Path) -> None:
    path = str(tmp_path / "view.sqlite3")
    store = JobStore(path)
    await store.open()
    try:
        for tenant in ("shop-a", "shop-b"):
            await store.apply([submitted(f"{tenant}-{n}", n, tenant) for n in range(6)])
            await store.apply([completed(f"{tenant}-{n}", 10 + n, tenant) for n in range(5)])
    finally:
        await store.close()
    capped = JobStore(path, tenant_max_jobs=2)
    await capped.open()
    try:
        assert await capped.purge(at(0)) == 8  # nothing past retention; 4 over the cap for each tenant
        for tenant in ("shop-a", "shop-b"):
            kept = await capped.page(tenant, EVERY_JOB)
            assert kept is not None and sorted(job.id for job in kept) == [f"{tenant}-4", f"{tenant}-5"]
    finally:
        await capped.close()


def test_the_cap_and_the_active_counts_read_through_indexes(tmp_path: Path) -> None:
    path = tmp_path / "view.sqlite3"
    connect(str(path)).close()
    with sqlite3.connect(path) as db:
        trim = " ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {_OLDEST_TERMINAL}", ("shop-a", 1)))
        active = " ".join(
            row[3]
            for row in db.execute(
                "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress')"
            )
        )
    assert "SEARCH jobs USING INDEX jobs_terminal_by_tenant (tenant_id=?)" in trim, trim
    assert "jobs_by_status" in active, active


async def test_the_view_size_benchmark_runs_tiny_and_reports_its_shape() -> None:
    report = await view_size.measure(jobs=[30], cap=5)
    uncapped, capped = report["runs"]
    assert (uncapped["cap"], uncapped["jobs_held"], capped["cap"], capped["jobs_held"]) == (None, 30, 5, 5)
    assert capped["file_bytes"] > 0 and report["request_json_bytes"] > 20_000  # at the contract's limits
