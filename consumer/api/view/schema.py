"""The view's SQLite file: its tables and indexes, the upgrade of a file written by an earlier release, and a job's row
and back.

Tables: `jobs` (one row per job), `job_metadata` (each job's metadata, one row per key, for the list's filter; a
trigger deletes a job's rows with it), `offsets` (the next offset of every partition read, written in the same
transaction as the rows it produced), `workers` (when each was last seen, and whether it is the template pool's),
`renders` (the service times of recent renders), `image_keys` (the similar-video fallback's index of completed
videos by start image: `consumer.api.view.similar_index`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumer.api.view.job_state import TERMINAL, JobState

__all__ = ["COLUMNS", "METADATA_ROWS", "TERMINAL_ROWS", "UPSERT", "connect", "dt", "row_of", "state_of", "ts"]

TERMINAL_ROWS = "status IN ({})".format(", ".join(f"'{status}'" for status in sorted(TERMINAL)))
"""The SQL condition of a terminal job's row, exactly as the partial index `jobs_terminal_by_tenant` has it (a query
uses that index only with the same condition)."""

_SCHEMA = f"""
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
    lane TEXT NOT NULL DEFAULT 'interactive',
    model TEXT,
    deleted_at REAL,
    phase TEXT,
    step INTEGER,
    total INTEGER,
    image_print TEXT,
    fallback TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_by_update ON jobs (updated_at);
CREATE INDEX IF NOT EXISTS jobs_terminal_by_tenant ON jobs (tenant_id, updated_at, id) WHERE {TERMINAL_ROWS};
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
CREATE TABLE IF NOT EXISTS job_metadata (
    job_id TEXT NOT NULL, tenant_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (job_id, key)
);
CREATE INDEX IF NOT EXISTS job_metadata_by_value ON job_metadata (tenant_id, key, value);
"""
# Indexes on columns added since the first release: made once the columns exist. `jobs_by_tenant_status` serves the
# list's status filter; `jobs_queued_by_tenant` a queued job's place in its lane. The trigger drops a job's metadata
# with its row.
_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_tenant_status ON jobs (tenant_id, status, created_at, id);
CREATE INDEX IF NOT EXISTS jobs_queued_by_tenant ON jobs (tenant_id, degraded, lane, created_at, id)
    WHERE status = 'queued';
CREATE TRIGGER IF NOT EXISTS job_metadata_leaves AFTER DELETE ON jobs BEGIN
    DELETE FROM job_metadata WHERE job_id = old.id;
END;
"""
_SIMILAR_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_keys (
    tenant_id TEXT NOT NULL, key TEXT NOT NULL, completed_at REAL NOT NULL, job_id TEXT NOT NULL,
    image_print TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key, completed_at, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS image_keys_by_job ON image_keys (job_id);
CREATE TRIGGER IF NOT EXISTS image_keys_of_removed_job AFTER DELETE ON jobs BEGIN
    DELETE FROM image_keys WHERE job_id = old.id;
END;
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
    ("jobs", "model", "TEXT", None),
    ("jobs", "deleted_at", "REAL", None),
    ("jobs", "phase", "TEXT", None),
    ("jobs", "step", "INTEGER", None),
    ("jobs", "total", "INTEGER", None),
    ("jobs", "image_print", "TEXT", None),
    ("jobs", "fallback", "TEXT", None),
)
_METADATA_BACKFILL = (
    "INSERT OR IGNORE INTO job_metadata (job_id, tenant_id, key, value) SELECT jobs.id, jobs.tenant_id, item.key, "
    "item.value FROM jobs, json_each(jobs.request, '$.metadata') AS item WHERE jobs.request IS NOT NULL"
)
METADATA_ROWS = "INSERT OR IGNORE INTO job_metadata (job_id, tenant_id, key, value) VALUES (?, ?, ?, ?)"
"""A job's metadata, one row per key, once its request is known (the request never changes after)."""
# `lane` is JobState.lane (derived from the request), stored to be counted; reading a row ignores it.
COLUMNS = (
    "id, tenant_id, status, progress, attempt, created_at, updated_at, version, request, result, cancel_requested_at, "
    "degraded, degraded_reason, lane, model, deleted_at, phase, step, total, image_print, fallback"
)
_COLUMN_COUNT = len(COLUMNS.split(", "))
UPSERT = (
    f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * _COLUMN_COUNT)}) "  # noqa: S608 - constant columns
    "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{name} = excluded.{name}" for name in COLUMNS.split(", ")[1:])
)


def connect(path: str) -> sqlite3.Connection:
    """The view's file (created, or upgraded in place), in WAL mode, for one thread at a time."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last commits, never corrupts
    fresh = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_metadata'").fetchone() is None
    db.executescript(_SCHEMA)
    db.executescript(_SIMILAR_SCHEMA)
    for table, column, kind, backfill in _ADDED_COLUMNS:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            if backfill is not None:
                db.execute(backfill)
    db.executescript(_INDEXES)
    if fresh:  # a file from before the metadata filter: its jobs' metadata, from their requests
        db.execute(_METADATA_BACKFILL)
    return db


def ts(moment: datetime) -> float:
    return moment.timestamp()


def dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def row_of(state: JobState) -> tuple[Any, ...]:
    """The row of `state`, in the order of COLUMNS."""
    return (
        state.id,
        state.tenant_id,
        state.status,
        state.progress,
        state.attempt,
        ts(state.created_at),
        ts(state.updated_at),
        state.version,
        json.dumps(state.request) if state.request is not None else None,
        json.dumps(state.result) if state.result is not None else None,
        ts(state.cancel_requested_at) if state.cancel_requested_at is not None else None,
        int(state.degraded),
        state.degraded_reason,
        state.lane,
        state.model,
        ts(state.deleted_at) if state.deleted_at is not None else None,
        state.phase,
        state.step,
        state.total,
        state.image_print,
        state.fallback,
    )


def state_of(row: Sequence[Any]) -> JobState:
    """The job a row of COLUMNS holds."""
    return JobState(
        id=row[0],
        tenant_id=row[1],
        status=row[2],
        progress=row[3],
        attempt=row[4],
        created_at=dt(row[5]),
        updated_at=dt(row[6]),
        version=row[7],
        request=json.loads(row[8]) if row[8] is not None else None,
        result=json.loads(row[9]) if row[9] is not None else None,
        cancel_requested_at=dt(row[10]) if row[10] is not None else None,
        degraded=bool(row[11]),
        degraded_reason=row[12],
        model=row[14],
        deleted_at=dt(row[15]) if row[15] is not None else None,
        phase=row[16],
        step=row[17],
        total=row[18],
        image_print=row[19],
        fallback=row[20],
    )
