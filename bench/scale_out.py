"""Benchmark 3: throughput of 1, 2 and 4 worker processes in one consumer group over 8 partitions.

Stand-in renders of R seconds (default 0.5 s, small 256x256x5 frames so rendering dominates; the stand-in sleeps,
so 4 workers scale on 2 cores). Each point: start the workers, wait until all are ready and the group has stopped
rebalancing, produce the batch spread evenly over the partitions (request i to partition i % 8: key hashing
would give some workers more than others and measure the skew, not the workers), and take
N / (last result - first send). Ratios are to the 1-worker point of the same run.

    python -m bench.scale_out [--workers 1 2 4] [--render-s 0.5] [--requests 64]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
from collections.abc import Sequence
from typing import Any

from bench.client import SMALL, Client, make_requests
from bench.infra import Infra, embedded_infra, new_run
from bench.workers import running_workers, settle_group

__all__ = ["main", "measure"]


async def measure(
    infra: Infra,
    *,
    workers: Sequence[int] = (1, 2, 4),
    render_s: float = 0.5,
    requests: int = 64,
    video: dict[str, int] = SMALL,
) -> dict[str, Any]:
    points = [await _point(infra, count, render_s=render_s, requests=requests, video=video) for count in workers]
    base = points[0]["throughput_per_s"] / points[0]["workers"]  # per worker at the smallest size (normally 1)
    for point in points:
        point["ratio_to_1_worker"] = round(point["throughput_per_s"] / base, 3)
        point["efficiency"] = round(point["ratio_to_1_worker"] / point["workers"], 3)
    return {
        "benchmark": "scale_out",
        "render_s": render_s,
        "requests": requests,
        "partitions": 8,
        "video": video,
        # One renderer per worker renders one video at a time: 1/R per worker at best.
        "ideal_throughput_per_worker_per_s": round(1 / render_s, 3) if render_s else None,
        "points": points,
    }


async def _point(infra: Infra, count: int, *, render_s: float, requests: int, video: dict[str, int]) -> dict[str, Any]:
    settings = new_run(infra, f"scale-{count}")
    async with Client(settings) as client, running_workers(infra, settings, count, render_s=render_s) as procs:
        await settle_group(procs)
        bodies = make_requests(f"scale{count}", requests, video=video)
        ids = [body["request_id"] for body in bodies]
        await client.send(bodies, round_robin=True)
        if not await client.wait_for(ids, timeout_s=60 + requests * (render_s + 1)):
            raise TimeoutError(f"{len(set(ids) - client.answered())} of {requests} requests unanswered")
        first = client.first_results(ids)
    span = max(arrival.arrived_at for arrival in first.values()) - min(client.sent_at[i] for i in ids)
    per_worker = collections.Counter(arrival.result.worker_id for arrival in first.values())
    return {
        "workers": count,
        "wall_s": round(span, 3),
        "throughput_per_s": round(requests / span, 3),
        "results_per_worker": dict(sorted(per_worker.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--render-s", type=float, default=0.5)
    parser.add_argument("--requests", type=int, default=64)
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await measure(infra, workers=args.workers, render_s=args.render_s, requests=args.requests)

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
