"""The view's storage as the API uses it: awaitable, every call run in order on a thread of its own (so the event
loop never blocks on the disk and SQLite never sees two threads), with the jobs seen most recently and the queue
figures in memory, always current: a status read of a recent job, shedding and routing never leave the event loop.
(The rows: `database`.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from consumer.api.submission.wait_estimate import NO_JOBS, QueueStats, TenantQueue
from consumer.api.view.database import RECENT_RENDERS, BatchOutcome, Partition, ViewDatabase
from consumer.api.view.job_state import Event, JobState
from consumer.api.view.pages import PageQuery
from consumer.api.view.queue_counts import QueueState, active_key, pool_count
from consumer.core.similar import ImagePrint

__all__ = ["JobStore"]

T = TypeVar("T")
# The least mean service time the estimates divide by: results that say a render took no time at all (a worker's
# clock, or a hostile record) must not make the pool's capacity infinite or a division fail.
_MIN_SERVICE_S = 0.1


class JobStore:
    """Every write goes through this object, so the jobs it keeps in memory are never stale. `tenant_max_jobs`: the
    jobs the view keeps per tenant (`consumer.api.view.retention`); None keeps them all until retention."""

    def __init__(self, path: str, *, cached_jobs: int = 10_000, tenant_max_jobs: int | None = None) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidgen-api-view")
        self._path = path
        self._tenant_max_jobs = tenant_max_jobs
        self._db: ViewDatabase | None = None
        self._cache: OrderedDict[str, JobState] = OrderedDict()
        self._cached_jobs = cached_jobs
        self._queue = QueueState(active=Counter(), workers={}, service_s=[])
        self._tenants: dict[str, TenantQueue] = {}
        self._waiting_since: datetime | None = None
        self._renders: deque[float] = deque(maxlen=RECENT_RENDERS)

    def _remember(self, states: Iterable[JobState]) -> None:
        for state in states:
            known = self._cache.get(state.id)
            if known is None or known.version <= state.version:  # a read that raced a write never wins over it
                self._cache[state.id] = state
            self._cache.move_to_end(state.id)
        while len(self._cache) > self._cached_jobs:
            self._cache.popitem(last=False)

    async def open(self) -> None:
        self._db = await self._run(lambda: ViewDatabase(self._path, tenant_max_jobs=self._tenant_max_jobs))
        await self._load_queue_state()

    async def _load_queue_state(self) -> None:
        self._queue = await self._run(self._require().queue_state)
        self._tenants = dict(self._queue.tenants)
        self._waiting_since = self._queue.waiting_since
        self._renders = deque(self._queue.service_s, maxlen=RECENT_RENDERS)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _require(self) -> ViewDatabase:
        if self._db is None:
            raise RuntimeError("job store not open")
        return self._db

    async def apply(
        self,
        events: Sequence[Event],
        *,
        offsets: Mapping[Partition, int] | None = None,
        workers: Mapping[str, datetime] | None = None,
    ) -> BatchOutcome:
        db = self._require()
        outcome = await self._run(lambda: db.apply(events, offsets or {}, workers or {}))
        self._remember(outcome.changed)
        for job_id in outcome.removed:
            self._cache.pop(job_id, None)
        self._queue.active.clear()
        self._queue.active.update(outcome.active)
        for tenant, jobs in outcome.tenants.items():
            if jobs == NO_JOBS:
                self._tenants.pop(tenant, None)
            else:
                self._tenants[tenant] = jobs
        for worker, seen in (workers or {}).items():
            if worker in outcome.template_workers:
                self._queue.workers.pop(worker, None)  # reported progress before its first degraded answer
            else:
                self._queue.workers[worker] = max(seen, self._queue.workers.get(worker, seen))
        self._waiting_since = outcome.waiting_since
        self._renders.extend(outcome.service_s)
        return outcome

    async def get(self, tenant_id: str, job_id: str) -> JobState | None:
        """The tenant's job; None when it is not the tenant's, not known or deleted."""
        state = await self.find(tenant_id, job_id)
        return state if state is not None and state.deleted_at is None else None

    async def find(self, tenant_id: str, job_id: str) -> JobState | None:
        """The tenant's job, deleted or not."""
        state = self._cache.get(job_id)
        if state is None:
            db = self._require()
            state = await self._run(lambda: db.get(tenant_id, job_id))
            if state is None:
                return None
            self._remember([state])
        return state if state.tenant_id == tenant_id else None

    async def sharing(self, state: JobState, video_uri: str | None) -> list[JobState]:
        """The tenant's other jobs that may show the objects of `state` (`ViewDatabase.sharing`)."""
        db = self._require()
        return await self._run(lambda: db.sharing(state, video_uri))

    async def similar(self, tenant_id: str, image: ImagePrint, width: int, height: int) -> JobState | None:
        """The tenant's earlier video of the same start image (`ViewDatabase.similar`): a few index reads."""
        db = self._require()
        return await self._run(lambda: db.similar(tenant_id, image, width, height))

    async def page(self, tenant_id: str, query: PageQuery) -> list[JobState] | None:
        db = self._require()
        return await self._run(lambda: db.page(tenant_id, query))

    async def queued_ahead(self, state: JobState) -> int:
        """The tenant's own jobs queued before `state` in its pool and lane (`ViewDatabase.queued_ahead`)."""
        db = self._require()
        return await self._run(lambda: db.queued_ahead(state))

    def queue_stats(
        self, *, now: datetime, active_s: float, default_service_s: float, heartbeat_s: float | None = None
    ) -> QueueStats:
        """The GPU pool's queue, in all and per tenant (and the template pool's length), from memory, kept current
        by every write: shedding and routing cost no query. A GPU worker counts as active when seen within
        `active_s`; and, once a job has waited for the pool longer than `heartbeat_s`, only when seen within that
        (a worker with work waiting reports at every step and phase: one silent that long is gone)."""
        seen_since = now - timedelta(seconds=active_s)
        waiting = self._waiting_since
        if heartbeat_s is not None and waiting is not None and (now - waiting).total_seconds() > heartbeat_s:
            seen_since = max(seen_since, now - timedelta(seconds=heartbeat_s))
        workers = self._queue.workers
        active = self._queue.active
        return QueueStats(
            queued=pool_count(active, "queued", degraded=False),
            in_progress=pool_count(active, "in_progress", degraded=False),
            workers_active=sum(1 for seen in workers.values() if seen >= seen_since),
            service_s=max(_MIN_SERVICE_S, sum(self._renders) / len(self._renders))
            if self._renders
            else default_service_s,
            bulk_queued=active[active_key("queued", degraded=False, lane="bulk")],
            template_queued=pool_count(active, "queued", degraded=True),
            last_active=max(workers.values(), default=None),
            waiting_since=self._waiting_since,
            tenants=dict(self._tenants),
        )

    async def offsets(self) -> dict[Partition, int]:
        return await self._run(self._require().offsets)

    async def purge(self, before: datetime) -> int:
        db = self._require()
        removed = await self._run(lambda: db.purge(before))
        if removed:
            self._cache.clear()
        await self._load_queue_state()
        return removed
