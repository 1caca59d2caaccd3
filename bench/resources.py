"""Benchmark 4: does a worker leak? RSS and open file descriptors of one worker process (psutil) when ready, after a
warm-up batch, and after N more requests (default 2,000; stand-in render R = 0, small 256x256x5 frames), with a
sample every second so a steady climb shows apart from warm-up growth.

    python -m bench.resources [--requests 2000] [--warmup 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from bench import stats
from bench.client import SMALL, Client, make_requests
from bench.infra import Infra, embedded_infra, new_run
from bench.workers import WorkerProcess, running_workers

__all__ = ["main", "measure"]


async def measure(
    infra: Infra, *, requests: int = 2000, warmup: int = 50, video: dict[str, int] = SMALL
) -> dict[str, Any]:
    settings = new_run(infra, "resources")
    async with Client(settings) as client, running_workers(infra, settings, 1, render_s=0.0) as (worker,):
        ready = _reading(worker, done=0)
        await _batch(client, make_requests("warm", warmup, video=video))
        warmed = _reading(worker, done=warmup)
        samples: list[dict[str, float]] = []
        sampler = asyncio.create_task(_sample(worker, client, samples))
        try:
            started = time.monotonic()
            await _batch(client, make_requests("load", requests, video=video))
            elapsed = time.monotonic() - started
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        after = _reading(worker, done=warmup + requests)
        statuses = {arrival.result.status for arrival in client.arrivals}
    second_half = [sample for sample in samples if sample["done"] >= warmup + requests / 2]
    return {
        "benchmark": "resources",
        "requests": requests,
        "warmup_requests": warmup,
        "video": video,
        "statuses": sorted(statuses),
        "throughput_per_s": round(requests / elapsed, 2),
        "ready": ready,
        "after_warmup": warmed,
        "after": after,
        "rss_growth_mb": round(after["rss_mb"] - ready["rss_mb"], 1),
        "rss_growth_after_warmup_mb": round(after["rss_mb"] - warmed["rss_mb"], 1),
        "fd_growth": after["open_fds"] - ready["open_fds"],
        "fd_growth_after_warmup": after["open_fds"] - warmed["open_fds"],
        "rss_slope_second_half_mb_per_1000": _per_thousand(second_half),
        "samples": samples,
    }


def _per_thousand(samples: list[dict[str, float]]) -> float | None:
    """RSS growth in MB per 1,000 requests, least squares over the samples."""
    growth = stats.slope([sample["done"] for sample in samples], [sample["rss_mb"] for sample in samples])
    return None if growth is None else round(1000 * growth, 2)


def _reading(worker: WorkerProcess, *, done: int) -> dict[str, Any]:
    return {"done": done, "rss_mb": worker.rss_mb(), "open_fds": worker.open_fds()}


async def _batch(client: Client, bodies: list[dict[str, Any]]) -> None:
    ids = [body["request_id"] for body in bodies]
    await client.send(bodies)
    if not await client.wait_for(ids, timeout_s=120 + len(ids)):
        raise TimeoutError(f"{len(set(ids) - client.answered())} of {len(ids)} requests unanswered")


async def _sample(worker: WorkerProcess, client: Client, samples: list[dict[str, float]]) -> None:
    started = time.monotonic()
    while True:
        samples.append(
            {
                "t_s": round(time.monotonic() - started, 1),
                "done": len(client.answered()),
                "rss_mb": worker.rss_mb(),
                "open_fds": worker.open_fds(),
            }
        )
        await asyncio.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await measure(infra, requests=args.requests, warmup=args.warmup)

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
