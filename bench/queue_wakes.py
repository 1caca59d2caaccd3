"""Benchmark: what one view batch that moves a queue costs the open event streams of queued jobs.

A view holds `--queued` jobs queued in the GPU pool's interactive lane, spread over `--tenants` tenants, and as many
in the bulk lane; `--streams` of the interactive ones (and as many bulk ones) have a stream open, each listening on
its job and its queue (`Listeners.follow_queue`). One batch then starts the oldest interactive job. Reported: the
streams the batch woke (the interactive ones only: the bulk queue did not move), and the time the woken streams
take to learn their new place as the API computes it (the job from the store's memory, one indexed count of the
tenant's jobs ahead, the other tenants' figures from memory), in all and per stream; and the time of the batch itself.

    python -m bench.queue_wakes [--queued 5000] [--tenants 50] [--streams 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumer.api.submission.wait_estimate import queue_position
from consumer.api.view.job_state import Progressed, Submitted
from consumer.api.view.job_store import JobStore
from consumer.api.view.listeners import Listeners
from consumer.api.view.queue_counts import active_key
from schemas.events import VideoProgress, VideoRequest

__all__ = ["main", "measure"]

_T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _submitted(index: int, tenants: int, lane: str) -> Submitted:
    request = VideoRequest(
        request_id=f"{lane}-{index}",
        tenant_id=f"shop-{index % tenants}",
        prompt="a lamp",
        priority="bulk" if lane == "bulk" else None,
    )
    return Submitted(request, _T0 + timedelta(milliseconds=index))


async def measure(*, queued: int, tenants: int, streams: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        store = JobStore(str(Path(folder) / "view.sqlite3"))
        await store.open()
        try:
            await store.apply([_submitted(i, tenants, lane) for lane in ("interactive", "bulk") for i in range(queued)])
            listeners = Listeners()
            with contextlib.ExitStack() as open_streams:
                watched = []
                for lane in ("interactive", "bulk"):
                    for index in range(1, streams + 1):  # the first interactive job is the one that starts
                        job_id = f"{lane}-{index}"
                        changed = open_streams.enter_context(listeners.watch(job_id))
                        listeners.follow_queue(
                            changed, active_key("queued", False, "bulk" if lane == "bulk" else "interactive")
                        )
                        watched.append((job_id, f"shop-{index % tenants}", changed))
                progress = VideoProgress(
                    request_id="interactive-0", tenant_id="shop-0", event="started", step=0, total=4, percent=0,
                    worker_id="gpu-1", at=_T0,
                )  # fmt: skip
                started = time.perf_counter()
                outcome = await store.apply([Progressed(progress, _T0 + timedelta(seconds=60))])
                batch_s = time.perf_counter() - started
                listeners.notify(outcome)
                woken = [(job_id, tenant) for job_id, tenant, changed in watched if changed.is_set()]
                started = time.perf_counter()
                stats = store.queue_stats(now=_T0 + timedelta(seconds=61), active_s=60, default_service_s=30)
                for job_id, tenant in woken:
                    state = await store.get(tenant, job_id)
                    if state is None:
                        raise RuntimeError(f"{job_id} left the view")
                    own_ahead = await store.queued_ahead(state)
                    queue_position(stats, tenant, state.lane, own_ahead=own_ahead, degraded=False)
                places_s = time.perf_counter() - started
        finally:
            await store.close()
    return {
        "queued_per_lane": queued,
        "tenants": tenants,
        "streams_open": 2 * streams,
        "streams_woken": len(woken),
        "batch_ms": round(batch_s * 1000, 2),
        "places_ms": round(places_s * 1000, 2),
        "per_stream_us": round(places_s / max(len(woken), 1) * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_wakes", description=__doc__)
    parser.add_argument("--queued", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--streams", type=int, default=500)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(queued=args.queued, tenants=args.tenants, streams=args.streams)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
