"""The view's rows, synchronously: a batch of job events applied in one transaction with the topic offsets it came
from (so a restart resumes exactly where the rows end) and when each worker was last seen; reads of one job and of a
tenant's pages; the queue figures; purging. (The file: `schema`; the async front the API uses: `job_store`.)

A worker belongs to the template pool once it answers a degraded result or reports progress on a degraded job; the
others are the GPU pool's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from consumer.api.submission.wait_estimate import TenantQueue
from consumer.api.view.job_state import Answered, Event, IgnoredEvent, JobState, Progressed, apply, service_seconds
from consumer.api.view.pages import PageQuery
from consumer.api.view.queue_counts import QUEUES, ActiveCounts, JobSlot, QueueState, active_key
from consumer.api.view.retention import TenantCap
from consumer.api.view.schema import COLUMNS, METADATA_ROWS, UPSERT, connect, dt, row_of, state_of, ts
from consumer.api.view.similar_index import reindex, similar_video
from consumer.core.similar import ImagePrint

__all__ = ["RECENT_RENDERS", "BatchOutcome", "Partition", "ViewDatabase"]

Partition = tuple[str, int]
RECENT_RENDERS = 50
_OLDEST_QUEUED = "SELECT MIN(created_at) FROM jobs WHERE status = 'queued' AND degraded = 0"
_ACTIVE_ROWS = (
    "SELECT tenant_id, status, degraded, lane, COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress') "
    "GROUP BY tenant_id, status, degraded, lane"
)


_QUEUED_AHEAD = (
    "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND tenant_id = ? AND degraded = ? AND lane = ? "
    "AND (created_at < ? OR (created_at = ? AND id < ?))"
)


def _key(state: JobState) -> tuple[float, float, str]:
    created = ts(state.created_at)
    return created, created, state.id


def _filters(tenant_id: str, query: PageQuery) -> tuple[list[str], list[object]]:
    """The SQL conditions (constant text) and their values of the query's filters."""
    conditions = ["tenant_id = ?", "deleted_at IS NULL"]
    values: list[object] = [tenant_id]
    if query.statuses:
        conditions.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        values.extend(query.statuses)
    if query.created_after is not None:
        conditions.append("created_at >= ?")
        values.append(query.created_after)
    for key, value in query.metadata:
        conditions.append("id IN (SELECT job_id FROM job_metadata WHERE tenant_id = ? AND key = ? AND value = ?)")
        values.extend((tenant_id, key, value))
    return conditions, values


def _metadata_rows(states: Iterable[JobState]) -> list[tuple[str, str, str, str]]:
    return [
        (state.id, state.tenant_id, str(key), str(value))
        for state in states
        if state.request is not None
        for key, value in (state.request.get("metadata") or {}).items()
    ]


@dataclass
class BatchOutcome:
    changed: list[JobState] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    service_s: list[float] = field(default_factory=list)  # of the renders the batch finished
    active: Counter[str] = field(default_factory=Counter)  # jobs queued and in progress after it, by pool and lane
    tenants: dict[str, TenantQueue] = field(default_factory=dict)  # the active jobs of the tenants it changed
    removed: list[str] = field(default_factory=list)  # jobs it took over their tenant's cap, deleted
    template_workers: set[str] = field(default_factory=set)  # the batch's workers that are the template pool's
    waiting_since: datetime | None = None  # when the oldest job queued for the GPU pool arrived
    queues: set[str] = field(default_factory=set)  # the queues (`QUEUES`) a job joined or left: their places moved


def _slot(state: JobState) -> JobSlot:
    return state.tenant_id, active_key(state.status, state.degraded, state.lane)


class ViewDatabase:
    """One connection; only ever called from one thread at a time (the job store's)."""

    def __init__(self, path: str, *, tenant_max_jobs: int | None = None) -> None:
        self._db = connect(path)
        self._active = ActiveCounts.of_rows(self._db.execute(_ACTIVE_ROWS).fetchall())
        self._template_workers = self._known_template_workers()
        self._cap = TenantCap(self._db, tenant_max_jobs)

    def _known_template_workers(self) -> set[str]:
        return {worker for (worker,) in self._db.execute("SELECT worker_id FROM workers WHERE template = 1")}

    def _waiting_since(self) -> datetime | None:
        (oldest,) = self._db.execute(_OLDEST_QUEUED).fetchone()
        return dt(oldest) if oldest is not None else None

    def close(self) -> None:
        self._db.close()

    def apply(
        self, events: Sequence[Event], offsets: Mapping[Partition, int], workers: Mapping[str, datetime]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        states: dict[str, JobState | None] = {}
        before: dict[str, JobSlot | None] = {}
        services = outcome.service_s
        template = outcome.template_workers
        for event in events:
            job_id = event.job_id
            if job_id not in states:
                known = states[job_id] = self._load(job_id)
                before[job_id] = None if known is None else _slot(known)
            after = apply(states[job_id], event)
            if isinstance(after, IgnoredEvent):
                outcome.ignored[after.reason] += 1
            elif after is not None:
                states[job_id] = after
                outcome.changed.append(after)
                if isinstance(event, Answered) and (seconds := service_seconds(event.result)) is not None:
                    services.append(seconds)
            if isinstance(event, Answered) and event.result.degraded and event.result.similar_to is None:
                template.add(event.result.worker_id)
            elif isinstance(event, Progressed) and getattr(states[job_id], "degraded", False):
                template.add(event.progress.worker_id)
        self._template_workers |= template
        template |= self._template_workers & workers.keys()
        latest = {state.id: state for state in outcome.changed}
        self._db.execute("BEGIN")
        try:
            self._db.executemany(UPSERT, [row_of(state) for state in latest.values()])
            self._db.executemany(METADATA_ROWS, _metadata_rows(latest.values()))
            reindex(self._db, latest.values())
            added = [state.tenant_id for job_id, state in latest.items() if before[job_id] is None]
            for tenant in added:
                self._cap.added(tenant)
            outcome.removed = self._cap.enforce(added)  # only when jobs are added: see `retention`
            self._db.executemany("INSERT INTO renders (service_s) VALUES (?)", [(value,) for value in services])
            if services:
                self._db.execute("DELETE FROM renders WHERE id <= (SELECT MAX(id) FROM renders) - ?", (RECENT_RENDERS,))
            self._db.executemany(
                "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
                [(topic, partition, offset) for (topic, partition), offset in offsets.items()],
            )
            self._db.executemany(
                "INSERT INTO workers (worker_id, last_seen, template) VALUES (?, ?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen), "
                "template = MAX(template, excluded.template)",
                [(worker, ts(seen), int(worker in template)) for worker, seen in workers.items()],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._cap.recount()
            raise
        for state in latest.values():
            was, now = before[state.id], _slot(state)
            self._active.move(was, now)
            if was != now:
                outcome.queues.update(key for _, key in filter(None, (was, now)) if key in QUEUES)
        outcome.active = self._active.pool_keys()
        outcome.tenants = {tenant: self._active.tenant(tenant) for tenant in {s.tenant_id for s in latest.values()}}
        outcome.waiting_since = self._waiting_since()
        return outcome

    def _load(self, job_id: str) -> JobState | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608
        return state_of(row) if row is not None else None

    def get(self, tenant_id: str, job_id: str) -> JobState | None:
        """The tenant's job, deleted or not."""
        state = self._load(job_id)
        return state if state is not None and state.tenant_id == tenant_id else None

    def page(self, tenant_id: str, query: PageQuery) -> list[JobState] | None:
        """Up to `query.fetch` jobs of the tenant (not deleted) that pass the query's filters, in its order, after
        `query.after`; None when that job is not the tenant's (or gone)."""
        order = "DESC" if query.order == "desc" else "ASC"
        conditions, values = _filters(tenant_id, query)
        if query.after is not None:
            anchor = self.get(tenant_id, query.after)
            if anchor is None:
                return None
            created = ts(anchor.created_at)
            beyond = "<" if query.order == "desc" else ">"
            conditions.append(f"(created_at {beyond} ? OR (created_at = ? AND id {beyond} ?))")
            values.extend((created, created, anchor.id))
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM jobs WHERE {' AND '.join(conditions)} "  # noqa: S608 - constant conditions
            f"ORDER BY created_at {order}, id {order} LIMIT ?",
            (*values, query.fetch),
        ).fetchall()
        return [state_of(row) for row in rows]

    def queued_ahead(self, state: JobState) -> int:
        """The tenant's own jobs queued in the same pool and lane as `state`, created before it."""
        values = (state.tenant_id, int(state.degraded), state.lane, *_key(state))
        (count,) = self._db.execute(_QUEUED_AHEAD, values).fetchone()
        return int(count)

    def sharing(self, state: JobState, video_uri: str | None) -> list[JobState]:
        """The tenant's other jobs (not deleted) that may show the same objects as `state`: those whose result names
        `video_uri`, and every one still queued or rendering (a cache hit may give it those objects)."""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM jobs WHERE tenant_id = ? AND id != ? AND deleted_at IS NULL "  # noqa: S608
            "AND (status IN ('queued', 'in_progress') OR json_extract(result, '$.video.uri') = ?)",
            (state.tenant_id, state.id, video_uri),
        ).fetchall()
        return [state_of(row) for row in rows]

    def similar(self, tenant_id: str, image: ImagePrint, width: int, height: int) -> JobState | None:
        """The tenant's earlier video of the same start image for a `width` x `height` request (`similar_index`)."""
        return similar_video(self._db, tenant_id, image, width, height)

    def queue_state(self) -> QueueState:
        workers = self._db.execute("SELECT worker_id, last_seen FROM workers WHERE template = 0").fetchall()
        renders = self._db.execute("SELECT service_s FROM renders ORDER BY id").fetchall()
        return QueueState(
            active=self._active.pool_keys(),
            workers={worker: dt(seen) for worker, seen in workers},
            service_s=[value for (value,) in renders],
            waiting_since=self._waiting_since(),
            tenants=self._active.tenants(),
        )

    def offsets(self) -> dict[Partition, int]:
        rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def purge(self, before: datetime) -> int:
        """Forget jobs not updated since `before`, then every tenant's terminal jobs over the cap; how many went."""
        self._db.execute("BEGIN")
        try:
            expired = self._db.execute("DELETE FROM jobs WHERE updated_at < ? RETURNING tenant_id", (ts(before),))
            gone = [tenant for (tenant,) in expired.fetchall()]
            self._cap.removed(gone)
            capped = self._cap.enforce()
            self._db.execute("DELETE FROM workers WHERE last_seen < ?", (ts(before),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._cap.recount()
            raise
        self._active = ActiveCounts.of_rows(self._db.execute(_ACTIVE_ROWS).fetchall())
        self._template_workers = self._known_template_workers()
        return len(gone) + len(capped)
