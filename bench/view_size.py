"""Benchmark: how much of a replica's disk one tenant's jobs take in the job API's view, with and without the
per-tenant cap (`VIDGEN_API_TENANT_MAX_JOBS`).

One tenant's jobs at the contract's limits (a 1,000-character prompt and negative prompt, a 2,048-character image
URL, 32 metadata entries of 64 + 512 characters, echoed back in the result) go through the view's store as they do
in the API: submitted and completed, 100 a batch, into a fresh SQLite file. Reported per run: the jobs it holds, the
file's bytes (checkpointed, WAL included), bytes per job held, and the store's time per batch. The cap is enforced
as jobs are added, so the capped file stops growing once the tenant reaches its cap (SQLite reuses the freed pages)
however many jobs follow.

    python -m bench.view_size [--jobs 2000 --jobs 8000] [--cap 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumer.api.view.job_state import Answered, Event, Submitted
from consumer.api.view.job_store import JobStore
from schemas.events import VideoRequest, VideoResult

__all__ = ["main", "measure"]

_BATCH = 100
_T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _largest_request(job_id: str) -> VideoRequest:
    return VideoRequest(
        request_id=job_id,
        tenant_id="shop-heavy",
        prompt="p" * 1000,
        negative_prompt="n" * 1000,
        image_url="https://images.example/" + "i" * 2000,
        metadata={f"{index:02d}" + "k" * 62: "v" * 512 for index in range(32)},
    )


def _events(index: int) -> list[Event]:
    job_id = f"vid-{index:08d}"
    request = _largest_request(job_id)
    at = _T0 + timedelta(seconds=index)
    result = VideoResult.model_validate(
        {
            "request_id": job_id,
            "tenant_id": request.tenant_id,
            "status": "completed",
            "timings": {"received_at": at, "render_started_at": at, "completed_at": at + timedelta(seconds=1)},
            "worker_id": "gpu-1",
            "model": "tiny",
            "metadata": request.metadata,
        }
    )
    return [Submitted(request, at), Answered(result, at + timedelta(seconds=1))]


async def _fill(path: Path, *, jobs: int, cap: int | None) -> dict[str, Any]:
    store = JobStore(str(path), tenant_max_jobs=cap)
    await store.open()
    seconds: list[float] = []
    try:
        for first in range(0, jobs, _BATCH):
            events = [event for index in range(first, min(jobs, first + _BATCH)) for event in _events(index)]
            started = time.perf_counter()
            await store.apply(events)
            seconds.append(time.perf_counter() - started)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (held,) = db.execute("SELECT COUNT(*) FROM jobs").fetchone()
    size = sum(file.stat().st_size for file in path.parent.glob(path.name + "*"))
    return {
        "cap": cap,
        "jobs_submitted": jobs,
        "jobs_held": held,
        "file_bytes": size,
        "bytes_per_job_held": round(size / max(held, 1)),
        "ms_per_batch_of_100": round(1000 * sum(seconds) / len(seconds), 1),
    }


async def measure(*, jobs: list[int], cap: int) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for count in jobs:
            for limit in (None, cap):
                runs.append(await _fill(Path(scratch) / f"view-{count}-{limit}.sqlite3", jobs=count, cap=limit))
    request_bytes = len(_largest_request("vid-00000000").model_dump_json())
    return {"request_json_bytes": request_bytes, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.view_size", description=__doc__)
    parser.add_argument("--jobs", type=int, action="append", help="jobs of the tenant (repeatable); 2000 and 8000")
    parser.add_argument("--cap", type=int, default=500)
    args = parser.parse_args(argv)
    report = asyncio.run(measure(jobs=args.jobs or [2000, 8000], cap=args.cap))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
