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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from consumer.api.cursors import PageQuery
from consumer.api.jobs import Answered, Event, Ignored, JobState, apply, service_seconds
from consumer.api.shedding import QueueStats

__all__ = ["BatchOutcome", "JobStore", "Partition"]

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
    service_s REAL
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
"""
_COLUMNS = (
    "id, tenant_id, status, progress, attempt, created_at, updated_at, version, request, result, cancel_requested_at"
)


_UPSERT = (
    f"INSERT INTO jobs ({_COLUMNS}, service_s) VALUES ({', '.join('?' * 12)}) ON CONFLICT (id) DO UPDATE SET "  # noqa: S608
    + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS.split(", ")[1:])
    + ", service_s = COALESCE(excluded.service_s, jobs.service_s)"
)


@dataclass
class BatchOutcome:
    changed: list[JobState] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)


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

    def close(self) -> None:
        self._db.close()

    def apply(
        self, events: Sequence[Event], offsets: Mapping[Partition, int], workers: Mapping[str, datetime]
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        states: dict[str, JobState | None] = {}
        services: dict[str, float] = {}
        for event in events:
            job_id = event.job_id
            if job_id not in states:
                states[job_id] = self._load(job_id)
            after = apply(states[job_id], event)
            if isinstance(after, Ignored):
                outcome.ignored[after.reason] += 1
            elif after is not None:
                states[job_id] = after
                outcome.changed.append(after)
                if isinstance(event, Answered) and (seconds := service_seconds(event.result)) is not None:
                    services[job_id] = seconds
        latest = {state.id: state for state in outcome.changed}
        self._db.execute("BEGIN")
        try:
            self._db.executemany(_UPSERT, [(*self._row(state), services.get(state.id)) for state in latest.values()])
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

    def queue_stats(self, *, now: datetime, active_s: float, default_service_s: float) -> QueueStats:
        counts = dict(
            self._db.execute(
                "SELECT status, COUNT(*) FROM jobs WHERE status IN ('queued', 'in_progress') GROUP BY status"
            ).fetchall()
        )
        (workers,) = self._db.execute(
            "SELECT COUNT(*) FROM workers WHERE last_seen >= ?", (_ts(now) - active_s,)
        ).fetchone()
        (service,) = self._db.execute(
            "SELECT AVG(service_s) FROM (SELECT service_s FROM jobs WHERE service_s IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT ?)",
            (_RECENT_RENDERS,),
        ).fetchone()
        return QueueStats(
            queued=counts.get("queued", 0),
            in_progress=counts.get("in_progress", 0),
            workers_active=workers,
            service_s=service if service is not None else default_service_s,
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
        return int(removed)


class JobStore:
    """The view's storage, awaitable. Calls run one at a time, in order, on a thread of their own."""

    def __init__(self, path: str) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidgen-api-view")
        self._path = path
        self._db: _Database | None = None

    async def open(self) -> None:
        self._db = await self._run(lambda: _Database(self._path))

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
        return await self._run(lambda: db.apply(events, offsets or {}, workers or {}))

    async def get(self, tenant_id: str, job_id: str) -> JobState | None:
        db = self._require()
        return await self._run(lambda: db.get(tenant_id, job_id))

    async def page(self, tenant_id: str, query: PageQuery) -> list[JobState] | None:
        db = self._require()
        return await self._run(lambda: db.page(tenant_id, query))

    async def queue_stats(self, *, now: datetime, active_s: float, default_service_s: float) -> QueueStats:
        db = self._require()
        return await self._run(lambda: db.queue_stats(now=now, active_s=active_s, default_service_s=default_service_s))

    async def offsets(self) -> dict[Partition, int]:
        return await self._run(self._require().offsets)

    async def purge(self, before: datetime) -> int:
        db = self._require()
        return await self._run(lambda: db.purge(before))
