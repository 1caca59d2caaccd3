"""The view's SQLite file: jobs, the topic offsets read so far (written in the same transaction as the rows they
produced, so a restart resumes exactly where the rows end) and when each worker was last seen.

Queue figures are kept per pool: the GPU pool's (shedding, the wait estimate, whether the pool is down) and the
template pool's (jobs routed there, `degraded`); and per lane (the accepted request's `priority`), since an
interactive job waits behind no bulk job queued (`consumer.api.submission.shedding`). A worker belongs to the template
pool once it answers a degraded result or reports progress on a degraded job; the others are the GPU pool's.

One connection, used from one thread: `JobStore` runs every call on its own single-thread executor, so the event
loop never blocks on the disk and SQLite never sees two threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from consumer.api.submission.shedding import QueueStats
from consumer.api.view.job_state import Answered, Event, IgnoredEvent, JobState, Progressed, apply, service_seconds
from consumer.api.view.pages import PageQuery
from consumer.core.priority_lanes import LANES, Lane

__all__ = ["BatchOutcome", "JobStore", "Partition", "QueueState"]

T = TypeVar("T")
Partition = tuple[str, int]
_RECENT_RENDERS = 50

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    version INTEGER NOT NULL,
    request TEXT,
    result TEXT,
    cancel_requested_at REAL,
    degraded INTEGER NOT NULL DEFAULT 0,
    degraded_reason TEXT,
    lane TEXT NOT NULL DEFAULT 'interactive'
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs (updated_at);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, last_seen REAL NOT NULL, template INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS renders (id INTEGER PRIMARY KEY AUTOINCREMENT, service_s REAL NOT NULL);
"""
# Columns added since the first release: a view file written before them gains them (as "not degraded"), then
# the statement beside it, if any, fills them in from what the rows already hold (a job's lane from its request).
_ADDED_COLUMNS = (
    ("jobs", "degraded", "INTEGER NOT NULL DEFAULT 0", None),
    ("jobs", "degraded_reason", "TEXT", None),
    ("workers", "template", "INTEGER NOT NULL DEFAULT 0", None),
    (
        "jobs",
        "lane",
        "TEXT NOT NULL DEFAULT 'interactive'",
        "UPDATE jobs SET lane = 'bulk' WHERE json_extract(request, '$.priority') = 'bulk'",
    ),
)
# `lane` is JobState.lane (derived from the request), stored to be counted; reading a row ignores it.
_COLUMNS = (
    "id, tenant_id, status, progress, attempt, created_at, updated_at, version, request, result, cancel_requested_at, "
    "degraded, degraded_reason, lane"
)
_COLUMN_COUNT = len(_COLUMNS.split(", "))
_TEMPLATE = "template:"  # prefix of the template pool's keys in the active-job counts (then the bulk lane's)


_UPSERT = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * _COLUMN_COUNT)}) "  # noqa: S608 - constant columns
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS.split(", ")[1:])
)
_OLDEST_QUEUED = "SELECT MIN(created_at) FROM jobs WHERE status = 'queued' AND degraded = 0"


@dataclass
class BatchOutcome:
    changed: list[JobState] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    service_s: list[float] = field(default_factory=list)  # of the renders the batch finished
    active: Counter[str] = field(default_factory=Counter)  # jobs queued and in progress after it, by pool and lane
    template_workers: set[str] = field(default_factory=set)  # the batch's workers that are the template pool's
    waiting_since: datetime | None = None  # when the oldest job queued for the GPU pool arrived


@dataclass(frozen=True)
class QueueState:
    """What the wait estimate needs, as stored: active jobs (by pool and lane), when GPU workers were last seen,
    recent renders, when the oldest job queued for the GPU pool arrived."""

    active: Counter[str]
    workers: dict[str, datetime]
    service_s: list[float]
    waiting_since: datetime | None = None


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _active_key(status: str, degraded: bool, lane: Lane) -> str:
    """The key of a job in the active counts: its status, prefixed for the template pool's jobs and for the bulk
    lane's (`queued`, `bulk:queued`, `template:bulk:queued`)."""
    return f"{_TEMPLATE if degraded else ''}{'bulk:' if lane == 'bulk' else ''}{status}"


_ACTIVE_KEYS = tuple(
    _active_key(status, pool, lane) for pool in (False, True) for lane in LANES for status in ("queued", "in_progress")
)


def _count(active: Counter[str], status: str, *, degraded: bool) -> int:
    """Jobs of one pool with that status, in every lane."""
    return sum(active[_active_key(status, degraded, lane)] for lane in LANES)


def _state(row: Sequence[Any]) -> JobState:
    return JobState(
        id=row[0],
        tenant_id=row[1],
        status=row[2],
        progress=row[3],
        attempt=row[4],
        created_at=_dt(row[5]),
        updated_at=_dt(row[6]),
        version=row[7],
        request=json.loads(row[8]) if row[8] is not None else None,
        result=json.loads(row[9]) if row[9] is not None else None,
        cancel_requested_at=_dt(row[10]) if row[10] is not None else None,
        degraded=bool(row[11]),
        degraded_reason=row[12],
    )


class _Database:
    """The synchronous side; only ever called on the store's thread."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last commits, never corrupts
        self._db.executescript(_SCHEMA)
        for table, column, kind, backfill in _ADDED_COLUMNS:
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if backfill is not None:
                    self._db.execute(backfill)
        self._active = self._count_active()
        self._template_workers = self._known_template_workers()

    def _count_active(self) -> Counter[str]:
        """Jobs queued and in progress, by pool and lane; kept up to date by `apply` so shedding never counts rows."""
        rows = self._db.execute(
            "SELECT status, degraded, lane, COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress') "
            "GROUP BY status, degraded, lane"
        ).fetchall()
        return Counter({_active_key(status, bool(degraded), lane): count for status, degraded, lane, count in rows})

    def _known_template_workers(self) -> set[str]:
        return {worker for (worker,) in self._db.execute("SELECT worker_id FROM workers WHERE template = 1")}

    def _waiting_since(self) -> datetime | None:
        (oldest,) = self._db.execute(_OLDEST_QUEUED).fetchone()
        return _dt(oldest) if oldest is not None else None

    def close(self) -> None:
        self._db.close()

    def apply(
        self, events: Sequence[Event], offsets: Mapping[Partition, int], workers: Mapping[str, datetime]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        states: dict[str, JobState | None] = {}
        before: dict[str, str] = {}
        services = outcome.service_s
        template = outcome.template_workers
        for event in events:
            job_id = event.job_id
            if job_id not in states:
                known = states[job_id] = self._load(job_id)
                before[job_id] = "" if known is None else _active_key(known.status, known.degraded, known.lane)
            after = apply(states[job_id], event)
            if isinstance(after, IgnoredEvent):
                outcome.ignored[after.reason] += 1
            elif after is not None:
                states[job_id] = after
                outcome.changed.append(after)
                if isinstance(event, Answered) and (seconds := service_seconds(event.result)) is not None:
                    services.append(seconds)
            if isinstance(event, Answered) and event.result.degraded:
                template.add(event.result.worker_id)
            elif isinstance(event, Progressed) and getattr(states[job_id], "degraded", False):
                template.add(event.progress.worker_id)
        self._template_workers |= template
        template |= self._template_workers & workers.keys()
        latest = {state.id: state for state in outcome.changed}
        self._db.execute("BEGIN")
        try:
            self._db.executemany(_UPSERT, [self._row(state) for state in latest.values()])
            self._db.executemany("INSERT INTO renders (service_s) VALUES (?)", [(value,) for value in services])
            if services:
                self._db.execute(
                    "DELETE FROM renders WHERE id <= (SELECT MAX(id) FROM renders) - ?", (_RECENT_RENDERS,)
                )
            self._db.executemany(
                "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
                [(topic, partition, offset) for (topic, partition), offset in offsets.items()],
            )
            self._db.executemany(
                "INSERT INTO workers (worker_id, last_seen, template) VALUES (?, ?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen), "
                "template = MAX(template, excluded.template)",
                [(worker, _ts(seen), int(worker in template)) for worker, seen in workers.items()],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for state in latest.values():
            self._active[before[state.id]] -= 1
            self._active[_active_key(state.status, state.degraded, state.lane)] += 1
        outcome.active = Counter({key: self._active[key] for key in _ACTIVE_KEYS})
        outcome.waiting_since = self._waiting_since()
        return outcome

    @staticmethod
    def _row(state: JobState) -> tuple[Any, ...]:
        return (
            state.id,
            state.tenant_id,
            state.status,
            state.progress,
            state.attempt,
            _ts(state.created_at),
            _ts(state.updated_at),
            state.version,
            json.dumps(state.request) if state.request is not None else None,
            json.dumps(state.result) if state.result is not None else None,
            _ts(state.cancel_requested_at) if state.cancel_requested_at is not None else None,
            int(state.degraded),
            state.degraded_reason,
            state.lane,
        )

    def _load(self, job_id: str) -> JobState | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()  # noqa: S608
        return _state(row) if row is not None else None

    def get(self, tenant_id: str, job_id: str) -> JobState | None:
        state = self._load(job_id)
        return state if state is not None and state.tenant_id == tenant_id else None

    def page(self, tenant_id: str, query: PageQuery) -> list[JobState] | None:
        """Up to `query.fetch` jobs of the tenant, newest first, after `query.after`; None when that job is not
        the tenant's (or gone)."""
        if query.after is None:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE tenant_id = ? "  # noqa: S608 - constant column list
                "ORDER BY created_at DESC, id DESC LIMIT ?",
                (tenant_id, query.fetch),
            ).fetchall()
            return [_state(row) for row in rows]
        anchor = self.get(tenant_id, query.after)
        if anchor is None:
            return None
        created = _ts(anchor.created_at)
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE tenant_id = ? "  # noqa: S608 - constant column list
            "AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT ?",
            (tenant_id, created, created, anchor.id, query.fetch),
        ).fetchall()
        return [_state(row) for row in rows]

    def queue_state(self) -> QueueState:
        workers = self._db.execute("SELECT worker_id, last_seen FROM workers WHERE template = 0").fetchall()
        renders = self._db.execute("SELECT service_s FROM renders ORDER BY id").fetchall()
        return QueueState(
            active=Counter({key: self._active[key] for key in _ACTIVE_KEYS}),
            workers={worker: _dt(seen) for worker, seen in workers},
            service_s=[value for (value,) in renders],
            waiting_since=self._waiting_since(),
        )

    def offsets(self) -> dict[Partition, int]:
        rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def purge(self, before: datetime) -> int:
        self._db.execute("BEGIN")
        try:
            removed = self._db.execute("DELETE FROM jobs WHERE updated_at < ?", (_ts(before),)).rowcount
            self._db.execute("DELETE FROM workers WHERE last_seen < ?", (_ts(before),))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._active = self._count_active()
        self._template_workers = self._known_template_workers()
        return int(removed)


class JobStore:
    """The view's storage, awaitable. Calls run one at a time, in order, on a thread of their own. Every write goes
    through this object, so it keeps the jobs it has seen most recently in memory, always current: a status read
    of a recent job never leaves the event loop."""

    def __init__(self, path: str, *, cached_jobs: int = 10_000) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidgen-api-view")
        self._path = path
        self._db: _Database | None = None
        self._cache: OrderedDict[str, JobState] = OrderedDict()
        self._cached_jobs = cached_jobs
        self._queue = QueueState(active=Counter(), workers={}, service_s=[])
        self._waiting_since: datetime | None = None
        self._renders: deque[float] = deque(maxlen=_RECENT_RENDERS)

    def _remember(self, states: Iterable[JobState]) -> None:
        for state in states:
            known = self._cache.get(state.id)
            if known is None or known.version <= state.version:  # a read that raced a write never wins over it
                self._cache[state.id] = state
            self._cache.move_to_end(state.id)
        while len(self._cache) > self._cached_jobs:
            self._cache.popitem(last=False)

    async def open(self) -> None:
        self._db = await self._run(lambda: _Database(self._path))
        await self._load_queue_state()

    async def _load_queue_state(self) -> None:
        self._queue = await self._run(self._require().queue_state)
        self._waiting_since = self._queue.waiting_since
        self._renders = deque(self._queue.service_s, maxlen=_RECENT_RENDERS)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _require(self) -> _Database:
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
        self._queue.active.clear()
        self._queue.active.update(outcome.active)
        for worker, seen in (workers or {}).items():
            if worker in outcome.template_workers:
                self._queue.workers.pop(worker, None)  # reported progress before its first degraded answer
            else:
                self._queue.workers[worker] = max(seen, self._queue.workers.get(worker, seen))
        self._waiting_since = outcome.waiting_since
        self._renders.extend(outcome.service_s)
        return outcome

    async def get(self, tenant_id: str, job_id: str) -> JobState | None:
        state = self._cache.get(job_id)
        if state is None:
            db = self._require()
            state = await self._run(lambda: db.get(tenant_id, job_id))
            if state is None:
                return None
            self._remember([state])
        return state if state.tenant_id == tenant_id else None

    async def page(self, tenant_id: str, query: PageQuery) -> list[JobState] | None:
        db = self._require()
        return await self._run(lambda: db.page(tenant_id, query))

    def queue_stats(self, *, now: datetime, active_s: float, default_service_s: float) -> QueueStats:
        """The GPU pool's queue (and the template pool's length), from memory, kept current by every write:
        shedding and routing cost no query."""
        seen_since = now - timedelta(seconds=active_s)
        workers = self._queue.workers
        active = self._queue.active
        return QueueStats(
            queued=_count(active, "queued", degraded=False),
            in_progress=_count(active, "in_progress", degraded=False),
            workers_active=sum(1 for seen in workers.values() if seen >= seen_since),
            service_s=sum(self._renders) / len(self._renders) if self._renders else default_service_s,
            bulk_queued=active[_active_key("queued", degraded=False, lane="bulk")],
            template_queued=_count(active, "queued", degraded=True),
            last_active=max(workers.values(), default=None),
            waiting_since=self._waiting_since,
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
