"""Benchmark: priority lanes. Does a bulk backlog delay interactive requests?

Two stand-in workers (renders of R seconds, small 256x256x5 frames) in one group over 8 partitions per topic. First a
backlog of B bulk requests (tenant `importer`) is published, then I interactive requests (tenant `shop`) at a steady
rate, one every `interval` seconds, while the backlog is being worked through. Both spread evenly over the partitions.
Two runs on fresh topics:

- `lanes`: the backlog carries `priority: bulk` and goes to the bulk topic (`VIDGEN_BULK_TOPIC`), as the product hook
  and the job API publish it;
- `one_topic`: the same requests without a priority, all on the requests topic: one queue, as before lanes.

Reported per run: the interactive requests' wait from publish to render start (p50, p90, p99, max; from the results'
`render_started_at`, same clock), the backlog's throughput (bulk results per second from its first publish to its
last result), and how many renders were bulk while the interactive stream lasted (the share bound at work).

    python -m bench.lanes [--render-s 0.5] [--bulk 300] [--interactive 20] [--interval-s 1.0] [--bulk-min-share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.client import SMALL, Client, make_requests
from bench.infra import Infra, new_run, run_on_embedded_infra
from bench.stats import summary
from bench.workers import running_workers, settle_group

__all__ = ["main", "measure"]

_WORKERS = 2
_MAX_INFLIGHT = 2


async def measure(
    infra: Infra,
    *,
    render_s: float = 0.5,
    bulk: int = 300,
    interactive: int = 20,
    interval_s: float = 1.0,
    bulk_min_share: float = 0.1,
) -> dict[str, Any]:
    runs = {
        mode: await _run(
            infra,
            lanes=mode == "lanes",
            render_s=render_s,
            bulk=bulk,
            interactive=interactive,
            interval_s=interval_s,
            bulk_min_share=bulk_min_share,
        )
        for mode in ("lanes", "one_topic")
    }
    lanes, one_topic = runs["lanes"], runs["one_topic"]
    return {
        "benchmark": "lanes",
        "parameters": {
            "workers": _WORKERS,
            "partitions_per_topic": 8,
            "max_inflight_jobs": _MAX_INFLIGHT,
            "render_s": render_s,
            "bulk_requests": bulk,
            "interactive_requests": interactive,
            "interactive_interval_s": interval_s,
            "bulk_min_share": bulk_min_share,
            "video": SMALL,
            "renderer": "standin (holds the thread R seconds; encode and upload are real)",
        },
        "runs": runs,
        "interactive_p50_wait_ratio_one_topic_to_lanes": _ratio(
            one_topic["interactive_wait_s"]["p50"], lanes["interactive_wait_s"]["p50"]
        ),
        "bulk_throughput_ratio_lanes_to_one_topic": _ratio(
            lanes["bulk_throughput_per_s"], one_topic["bulk_throughput_per_s"]
        ),
    }


async def _run(
    infra: Infra,
    *,
    lanes: bool,
    render_s: float,
    bulk: int,
    interactive: int,
    interval_s: float,
    bulk_min_share: float,
) -> dict[str, Any]:
    settings = new_run(infra, "lanes" if lanes else "one-topic")
    extra = {"VIDGEN_BULK_MIN_SHARE": str(bulk_min_share)}
    backlog = [{**body, "tenant_id": "importer"} for body in make_requests("bulk", bulk, video=SMALL)]
    if lanes:
        backlog = [{**body, "priority": "bulk"} for body in backlog]
    stream = [{**body, "tenant_id": "shop"} for body in make_requests("shop", interactive, video=SMALL, first=bulk)]
    async with (
        Client(settings) as client,
        running_workers(infra, settings, _WORKERS, render_s=render_s, max_inflight=_MAX_INFLIGHT, extra=extra) as procs,
    ):
        await settle_group(procs)
        started = time.monotonic()
        await client.send(backlog, round_robin=True, topic=settings.bulk_topic if lanes else None)
        for index, body in enumerate(stream):
            await client.send([body], round_robin=True, first_partition=index)
            await asyncio.sleep(interval_s)  # a steady stream: the benchmark's own pacing
        ids = [body["request_id"] for body in backlog + stream]
        budget_s = 120 + bulk * render_s
        if not await client.wait_for(ids, timeout_s=budget_s):
            raise TimeoutError(f"{len(set(ids) - client.answered())} of {len(ids)} requests unanswered")
        first = client.first_results(ids)
        wall_s = time.monotonic() - started
    backlog_ids = [body["request_id"] for body in backlog]
    stream_ids = [body["request_id"] for body in stream]
    waits = [first[rid].render_started - client.sent_at[rid] for rid in stream_ids]
    bulk_span = max(first[rid].arrived_at for rid in backlog_ids) - min(client.sent_at[rid] for rid in backlog_ids)
    window = (client.sent_at[stream_ids[0]], max(first[rid].render_started for rid in stream_ids))
    during = [rid for rid in ids if window[0] <= first[rid].render_started <= window[1]]
    bulk_during = len(set(during) & set(backlog_ids))
    return {
        "interactive_wait_s": summary(waits, digits=3),
        "bulk_throughput_per_s": round(bulk / bulk_span, 3),
        "bulk_wall_s": round(bulk_span, 2),
        "renders_while_interactive_stream": {"total": len(during), "bulk": bulk_during},
        "statuses": sorted({arrival.result.status for arrival in first.values()}),
        "wall_s": round(wall_s, 1),
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render-s", type=float, default=0.5)
    parser.add_argument("--bulk", type=int, default=300)
    parser.add_argument("--interactive", type=int, default=20)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--bulk-min-share", type=float, default=0.1)
    args = parser.parse_args(argv)

    return run_on_embedded_infra(
        lambda infra: measure(
            infra,
            render_s=args.render_s,
            bulk=args.bulk,
            interactive=args.interactive,
            interval_s=args.interval_s,
            bulk_min_share=args.bulk_min_share,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
