"""What the job API tells about a job, truthfully (issue 25, items 1-4 and 6), on a real SQLite view without a
broker: progress stays below 100 until the result and keeps the worker's phase; a queued job's place in its lane; a
worker silent longer than its heartbeat while jobs wait is not active; the list's filters, served by indexes; the
download's file name, never raw client text in a header; the CLI's bar through the phases."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from multidict import MultiDict, MultiDictProxy

from consumer.api.submission.wait_estimate import QueueStats, TenantQueue, queue_position
from consumer.api.view.job_state import Progressed, Submitted
from consumer.api.view.job_store import JobStore
from consumer.api.view.pages import PageQuery, parse_page_query
from consumer.api.view.schema import connect
from consumer.core.download_names import content_disposition, download_names
from consumer.errors import QueryError
from producer_examples.waiting import render_progress
from schemas.events import VideoProgress, VideoRequest
from tests.unit.test_view_retention import at, completed, submitted


def progressed(job_id: str, seconds: float, *, step: int, phase: str, percent: float) -> Progressed:
    event = VideoProgress.model_validate(
        {
            "request_id": job_id,
            "tenant_id": "shop-a",
            "event": "progress",
            "step": step,
            "total": 4,
            "percent": percent,
            "phase": phase,
            "worker_id": "gpu-1",
            "at": at(seconds),
        }
    )
    return Progressed(event, at(seconds))


def query(*pairs: tuple[str, str]) -> PageQuery:
    return parse_page_query(MultiDictProxy(MultiDict(pairs)))


async def test_progress_keeps_the_phase_and_reaches_100_only_with_the_result(tmp_path: Path) -> None:
    store = JobStore(str(tmp_path / "view.sqlite3"))
    await store.open()
    try:
        await store.apply([submitted("job-1", 1)])
        await store.apply([progressed("job-1", 2, step=4, phase="decoding", percent=100)])  # an older worker's 100
        state = await store.get("shop-a", "job-1")
        assert state is not None
        assert (state.status, state.progress, state.phase, state.step, state.total) == (
            "in_progress",
            99,
            "decoding",
            4,
            4,
        )
        await store.apply([progressed("job-1", 3, step=4, phase="uploading", percent=91)])  # never backwards
        assert (await store.get("shop-a", "job-1")).progress == 99  # type: ignore[union-attr]
    finally:
        await store.close()


def test_a_queued_job_counts_its_own_jobs_ahead_and_one_per_round_of_each_other_tenant() -> None:
    stats = QueueStats(
        queued=9,
        in_progress=1,
        workers_active=1,
        service_s=10,
        tenants={"a": TenantQueue(queued=3), "b": TenantQueue(queued=5), "c": TenantQueue(queued=1)},
    )
    assert queue_position(stats, "a", "interactive", own_ahead=0, degraded=False) == 3  # a, b, c: one round
    assert queue_position(stats, "a", "interactive", own_ahead=2, degraded=False) == 3 + 3 + 1  # three rounds


async def test_a_worker_silent_longer_than_its_heartbeat_while_jobs_wait_is_not_active(tmp_path: Path) -> None:
    store = JobStore(str(tmp_path / "view.sqlite3"))
    await store.open()
    try:
        await store.apply([completed("old", 10)], workers={"gpu-1": at(10)})  # the follower passes who it saw
        await store.apply([submitted("job-1", 20)])
        figures = {"active_s": 300.0, "default_service_s": 5.0, "heartbeat_s": 60.0}
        assert store.queue_stats(now=at(70), **figures).workers_active == 1  # the job has waited 50 s
        assert store.queue_stats(now=at(90), **figures).workers_active == 0  # 70 s: gpu-1 silent past 60 s
        assert store.queue_stats(now=at(90), active_s=300.0, default_service_s=5.0).workers_active == 1
    finally:
        await store.close()


def test_list_filters_parse_and_refuse_bad_values() -> None:
    parsed = query(
        ("status", "failed"), ("status", "queued"), ("metadata[sku]", "SKU-1"), ("created_after", "2026-12-01")
    )
    assert parsed.statuses == ("failed", "rejected", "queued")
    assert parsed.metadata == (("sku", "SKU-1"),)
    assert parsed.created_after == at(0).replace(hour=0).timestamp()
    assert query(("created_after", "2026-12-01T12:00:00+00:00")).created_after == at(0).timestamp()
    for name, value in (("status", "done"), ("metadata", "x"), ("metadata[]", "x"), ("created_after", "yesterday")):
        with pytest.raises(QueryError) as caught:
            query((name, value))
        assert caught.value.field == name.removesuffix("[]")


async def test_the_list_filters_by_status_metadata_and_creation_with_indexes(tmp_path: Path) -> None:
    path = str(tmp_path / "view.sqlite3")
    store = JobStore(path)
    await store.open()
    try:
        shoe = VideoRequest(request_id="shoe", tenant_id="shop-a", prompt="a shoe", metadata={"sku": "SKU-1"})
        other = VideoRequest(request_id="hat", tenant_id="shop-b", prompt="a hat", metadata={"sku": "SKU-1"})
        await store.apply([Submitted(shoe, at(5)), Submitted(other, at(5)), submitted("lamp", 50)])
        await store.apply([completed("lamp", 60)])

        async def ids(name: str, value: str) -> list[str]:
            return [state.id for state in await store.page("shop-a", query((name, value))) or []]

        assert await ids("metadata[sku]", "SKU-1") == ["shoe"]  # never another tenant's job
        assert await ids("status", "completed") == ["lamp"]
        assert await ids("status", "queued") == ["shoe"]
        assert await ids("created_after", str(int((at(0) + timedelta(seconds=30)).timestamp()))) == ["lamp"]
    finally:
        await store.close()
    db = connect(path)
    plans = {
        "status": "SELECT id FROM jobs WHERE tenant_id = 'a' AND status IN ('queued') ORDER BY created_at DESC",
        "metadata": "SELECT job_id FROM job_metadata WHERE tenant_id = 'a' AND key = 'sku' AND value = 'x'",
    }
    for name, sql in plans.items():
        plan = " ".join(str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING" in plan and "INDEX" in plan, (name, plan)
    db.close()


def test_the_download_is_named_after_the_sku_or_prompt_and_never_echoes_raw_text() -> None:
    assert download_names(job_id="vid_1", metadata={"sku": "Red Shoe 42"}, prompt="x") == (
        "red-shoe-42-vid_1.mp4",
        "red-shoe-42-vid_1.mp4",
    )
    assert download_names(job_id="vid_2", metadata={}, prompt="Café crème")[0] == "cafe-creme-vid_2.mp4"
    hostile = content_disposition(job_id="k:1", metadata={"sku": 'a"\r\nSet-Cookie: x=1; ü'}, prompt=None)
    assert hostile.isascii() and "\r" not in hostile and "\n" not in hostile and '"' not in hostile.split('"')[1]
    assert hostile.startswith("attachment; filename=\"a-set-cookie-x-1-u-k-1.mp4\"; filename*=UTF-8''")
    assert download_names(job_id="vid_3", metadata={}, prompt=None) == ("vid_3.mp4", "vid_3.mp4")


def test_the_cli_bar_moves_through_the_phases() -> None:
    line = render_progress(4, 4, elapsed_s=3.0, tick=0, phase="decoding", percent=42)
    assert line.startswith("[##########..............]  42% decoding")
    assert "denoising 2/4" in render_progress(2, 4, elapsed_s=1.0, tick=0, phase="denoising", percent=20)
