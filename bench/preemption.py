"""Benchmark: an interactive request's wait behind full slots of long bulk renders, with preemption on and off.

One stand-in worker (renders of R seconds in S steps, 256x256x5 frames; `VIDGEN_MAX_INFLIGHT_JOBS=2`, so bulk holds
one render slot and the other is kept for interactive requests). A backlog of B bulk requests is published first,
then I interactive requests, one every `interval` seconds (offset so that each lands in the middle of a bulk
render). Two runs on fresh topics: `VIDGEN_PREEMPTION=true` and `false`.

Reported per run: the interactive requests' wait from publish to render start (p50, p90, max; from the results'
`render_started_at`, same clock), how many bulk renders resumed after a pause, the most pauses one bulk render took,
and the bulk backlog's completion time (what preemption costs it).

    python -m bench.preemption [--render-s 6] [--steps 24] [--bulk 6] [--interactive 5] [--interval-s 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.client import SMALL, Client, make_requests
from bench.infra import Infra, new_run, run_on_embedded_infra
from bench.stats import summary
from bench.workers import running_workers

__all__ = ["main", "measure"]


async def measure(
    infra: Infra, *, render_s: float, steps: int, bulk: int, interactive: int, interval_s: float
) -> dict[str, Any]:
    runs = {
        mode: await _run(
            infra,
            preemption=mode == "preemption_on",
            render_s=render_s,
            steps=steps,
            bulk=bulk,
            interactive=interactive,
            interval_s=interval_s,
        )
        for mode in ("preemption_on", "preemption_off")
    }
    on, off = runs["preemption_on"]["interactive_wait_s"], runs["preemption_off"]["interactive_wait_s"]
    return {
        "benchmark": "preemption",
        "parameters": {
            "workers": 1,
            "max_inflight_jobs": 2,
            "render_s": render_s,
            "steps": steps,
            "step_s": round(render_s / steps, 3),
            "bulk_requests": bulk,
            "interactive_requests": interactive,
            "interactive_interval_s": interval_s,
            "video": SMALL,
            "renderer": "standin (holds the thread R seconds over S steps; encode and upload are real)",
        },
        "runs": runs,
        "interactive_p50_wait_ratio_off_to_on": round(off["p50"] / on["p50"], 1) if on["p50"] else None,
    }


async def _run(
    infra: Infra, *, preemption: bool, render_s: float, steps: int, bulk: int, interactive: int, interval_s: float
) -> dict[str, Any]:
    settings = new_run(infra, "preempt-on" if preemption else "preempt-off")
    extra = {"VIDGEN_PREEMPTION": str(preemption).lower(), "VIDGEN_CHECKPOINT_INTERVAL_S": "0"}
    backlog = [
        {**body, "priority": "bulk", "tenant_id": "catalog"}
        for body in make_requests("bulk", bulk, video=SMALL, steps=steps)
    ]
    stream = [
        {**body, "tenant_id": "shop"}
        for body in make_requests("shop", interactive, video=SMALL, steps=steps, first=bulk)
    ]
    async with (
        Client(settings) as client,
        running_workers(infra, settings, 1, render_s=render_s, max_inflight=2, extra=extra),
    ):
        started = time.monotonic()
        await client.send(backlog, topic=settings.bulk_topic)
        await asyncio.sleep(render_s * 1.5)  # into the second bulk render
        for body in stream:
            await client.send([body])
            await asyncio.sleep(interval_s)  # the benchmark's own pacing
        ids = [body["request_id"] for body in backlog + stream]
        if not await client.wait_for(ids, timeout_s=120 + (bulk + interactive) * render_s * 2):
            raise TimeoutError(f"{len(set(ids) - client.answered())} of {len(ids)} requests unanswered")
        first = client.first_results(ids)
        wall_s = time.monotonic() - started
    waits = [first[body["request_id"]].render_started - client.sent_at[body["request_id"]] for body in stream]
    resumed = [first[body["request_id"]].result.resumed_from_step for body in backlog]
    bulk_done = max(first[body["request_id"]].arrived_at for body in backlog) - min(
        client.sent_at[body["request_id"]] for body in backlog
    )
    return {
        "interactive_wait_s": summary(waits, digits=3),
        "bulk_renders_resumed": sum(step is not None for step in resumed),
        "bulk_resumed_from_steps": [step for step in resumed if step is not None],
        "bulk_backlog_done_s": round(bulk_done, 2),
        "statuses": sorted({arrival.result.status for arrival in first.values()}),
        "wall_s": round(wall_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render-s", type=float, default=6.0)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--bulk", type=int, default=6)
    parser.add_argument("--interactive", type=int, default=5)
    parser.add_argument("--interval-s", type=float, default=7.0)
    args = parser.parse_args(argv)

    return run_on_embedded_infra(
        lambda infra: measure(
            infra,
            render_s=args.render_s,
            steps=args.steps,
            bulk=args.bulk,
            interactive=args.interactive,
            interval_s=args.interval_s,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
