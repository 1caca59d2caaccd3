"""The view's SQLite file on its own: rows and offsets written together and read back after a reopen, purging,
the queue figures kept in memory, the cache never serving a stale state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumer.api.view.job_state import Answered, Submitted
from consumer.api.view.job_store import JobStore
from consumer.api.view.pages import PageQuery
from schemas.events import VideoRequest, VideoResult

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _submitted(job_id: str, at: datetime, tenant: str = "shop-1") -> Submitted:
    return Submitted(VideoRequest(request_id=job_id, tenant_id=tenant, prompt="a lamp"), at)


def _answered(job_id: str, at: datetime, render_s: float) -> Answered:
    result = VideoResult.model_validate(
        {
            "request_id": job_id,
            "tenant_id": "shop-1",
            "status": "completed",
            "timings": {"received_at": at, "render_started_at": at - timedelta(seconds=render_s), "completed_at": at},
            "worker_id": "w1",
            "model": "tiny",
        }
    )
    return Answered(result, at)


async def test_rows_offsets_and_queue_figures_survive_a_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "view.sqlite3")
    store = JobStore(path)
    await store.open()
    events = [_submitted(f"vid-{n}", T0 + timedelta(seconds=n)) for n in range(3)]
    outcome = await store.apply(events, offsets={("requests", 0): 3}, workers={"w1": T0})
    assert [state.id for state in outcome.changed] == ["vid-0", "vid-1", "vid-2"]
    await store.apply([_answered("vid-0", T0 + timedelta(seconds=9), 4.0)], offsets={("results", 1): 1})
    stats = store.queue_stats(now=T0, active_s=60, default_service_s=99)
    assert (stats.queued, stats.workers_active, stats.service_s) == (2, 1, 4.0)
    await store.close()

    reopened = JobStore(path)
    await reopened.open()
    assert await reopened.offsets() == {("requests", 0): 3, ("results", 1): 1}
    done = await reopened.get("shop-1", "vid-0")
    assert done is not None and done.status == "completed" and done.version == 2
    assert await reopened.get("shop-2", "vid-0") is None  # another tenant's id: nothing
    page = await reopened.page("shop-1", PageQuery(limit=2, after=None))
    assert page is not None and [state.id for state in page] == ["vid-2", "vid-1", "vid-0"]
    after = await reopened.page("shop-1", PageQuery(limit=2, after="vid-1"))
    assert after is not None and [state.id for state in after] == ["vid-0"]
    assert reopened.queue_stats(now=T0, active_s=60, default_service_s=99).queued == 2
    await reopened.close()


async def test_purge_forgets_old_jobs_and_the_queue_follows(tmp_path: Path) -> None:
    store = JobStore(str(tmp_path / "view.sqlite3"))
    await store.open()
    await store.apply([_submitted("vid-old", T0), _submitted("vid-new", T0 + timedelta(days=2))])
    assert await store.get("shop-1", "vid-old") is not None  # cached
    assert await store.purge(T0 + timedelta(days=1)) == 1
    assert await store.get("shop-1", "vid-old") is None
    assert await store.get("shop-1", "vid-new") is not None
    assert store.queue_stats(now=T0, active_s=60, default_service_s=1).queued == 1
    await store.close()
