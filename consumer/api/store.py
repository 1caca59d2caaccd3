"""The view's SQLite file: jobs, the topic offsets read so far (written in the same transaction as the rows they
produced, so a restart resumes exactly where the rows end) and when each worker was last seen.

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

from consumer.api.cursors import PageQuery
from consumer.api.jobs import Answered, Event, Ignored, JobState, apply, service_seconds
from consumer.api.shedding import QueueStats

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
    cancel_requested_at REAL
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
CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS renders (id INTEGER PRIMARY KEY AUTOINCREMENT, service_s REAL NOT NULL);
"""
_COLUMNS = (
    "id, tenant_id, status, progress, attempt, created_at, updated_at, version, request, result, cancel_requested_at"
)


_UPSERT = (
    f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * 11)}) ON CONFLICT (id) DO UPDATE SET "  # noqa: S608
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS.split(", ")[1:])
)


@dataclass
class BatchOutcome:
    changed: list[JobState] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    service_s: list[float] = field(default_factory=list)  # of the renders the batch finished
    active: Counter[str] = field(default_factory=Counter)  # jobs queued and in progress after the batch


@dataclass(frozen=True)
class QueueState:
    """What the wait estimate needs, as stored: active jobs, when workers were last seen, recent renders."""

    active: Counter[str]
    workers: dict[str, datetime]
    service_s: list[float]


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


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
        self._active = self._count_active()

    def _count_active(self) -> Counter[str]:
        """Jobs queued and in progress; kept up to date by `apply` so shedding never counts rows."""
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress') GROUP BY status"
        ).fetchall()
        return Counter(dict(rows))

    def close(self) -> None:
        self._db.close()

    def apply(
        self, events: Sequence[Event], offsets: Mapping[Partition, int], workers: Mapping[str, datetime]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        states: dict[str, JobState | None] = {}
        before: dict[str, str | None] = {}
        services = outcome.service_s
        for event in events:
            job_id = event.job_id
            if job_id not in states:
                states[job_id] = self._load(job_id)
                before[job_id] = getattr(states[job_id], "status", None)
            after = apply(states[job_id], event)
            if isinstance(after, Ignored):
                outcome.ignored[after.reason] += 1
            elif after is not None:
                states[job_id] = after
                outcome.changed.append(after)
                if isinstance(event, Answered) and (seconds := service_seconds(event.result)) is not None:
                    services.append(seconds)
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
                "INSERT INTO workers (worker_id, last_seen) VALUES (?, ?) "
                "ON CONFLICT (worker_id) DO UPDATE SET last_seen = MAX(last_seen, excluded.last_seen)",
                [(worker, _ts(seen)) for worker, seen in workers.items()],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for state in latest.values():
            self._active[before[state.id] or ""] -= 1
            self._active[state.status] += 1
        outcome.active = Counter({status: self._active[status] for status in ("queued", "in_progress")})
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
        workers = self._db.execute("SELECT worker_id, last_seen FROM workers").fetchall()
        renders = self._db.execute("SELECT service_s FROM renders ORDER BY id").fetchall()
        return QueueState(
            active=Counter({status: self._active[status] for status in ("queued", "in_progress")}),
            workers={worker: _dt(seen) for worker, seen in workers},
            service_s=[value for (value,) in renders],
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
            self._queue.workers[worker] = max(seen, self._queue.workers.get(worker, seen))
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
        """From memory, kept current by every write: shedding costs no query."""
        seen_since = now - timedelta(seconds=active_s)
        return QueueStats(
            queued=self._queue.active["queued"],
            in_progress=self._queue.active["in_progress"],
            workers_active=sum(1 for seen in self._queue.workers.values() if seen >= seen_since),
            service_s=sum(self._renders) / len(self._renders) if self._renders else default_service_s,
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
