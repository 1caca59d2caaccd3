"""Benchmark 1: how busy one worker keeps its model on a backlog, pipelined vs sequential.

Pipelined: the worker's defaults (two jobs before their render ends, so the next is prepared while one renders,
and up to four past it encoding and uploading). Sequential: one job at a time from fetch to answer
(VIDGEN_MAX_INFLIGHT_JOBS=1, VIDGEN_MAX_FINISHING_JOBS=0), the design without pipelining.

One worker with the stand-in renderer (holds R seconds per render), real H.264 encoding of 512x512x25 videos and
real uploads to the S3 server; the whole backlog is produced before the worker starts. From the result events'
render timings it reports, per mode, the fraction of the span (first render start to last render end) spent
rendering and the largest idle gap between consecutive renders.

Two measures from the results' timings (`render_started_at` is stamped when the worker takes its model, after
any wait for the previous render; `render_finished_at` after the frames are converted to 8-bit, which happens
once the model is released):
- `hold_fraction`, the headline: the stand-in holds the model for exactly R from `render_started_at`, so the
  model is busy during (start, start + R) and idle otherwise; `largest_idle_between_holds_s` is the worst stretch
  with the model idle between two renders. This is the GPU duty cycle the pipeline is meant to maximise.
- `render_fraction` and `largest_gap_s`: the union of the reported (start, finish) intervals, as a consumer of
  the results would compute it. It includes the conversion after release, so in pipelined mode consecutive
  intervals overlap; it is an upper bound.
The first render of a fresh worker (cold allocations) is left out (`warmup_renders`).

`--checkpoint-interval-s S` runs the workers with periodic render checkpoints every S seconds
(`VIDGEN_CHECKPOINT_INTERVAL_S`; 0, the default here, writes none): each capture copies the stand-in's latents (shaped
as EasyAnimate's for the request) on the render thread and uploads them in the background, as a model's would be.

    python -m bench.duty_cycle [--render-s 1 3] [--requests 40 10] [--checkpoint-interval-s 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench import stats
from bench.client import VIDEO_512, Arrival, Client, make_requests, render_intervals
from bench.infra import Infra, embedded_infra, new_run
from bench.stats import DutyCycle
from bench.workers import running_workers

__all__ = ["main", "measure"]

MODES = {"pipelined": (2, 4), "sequential": (1, 0)}  # (max_inflight_jobs, max_finishing_jobs)
DEFAULT_RENDER_S = (1.0, 3.0)
DEFAULT_REQUESTS = (40, 10)  # ~4 minutes for both modes at both R on 2 cores; raise to 100 for the full spec
WARMUP_RENDERS = 1


async def measure(
    infra: Infra,
    *,
    render_s: Sequence[float] = DEFAULT_RENDER_S,
    requests: Sequence[int] = DEFAULT_REQUESTS,
    video: dict[str, int] = VIDEO_512,
    timeline: bool = True,
    checkpoint_interval_s: float = 0.0,
) -> dict[str, Any]:
    if len(requests) == 1:
        requests = list(requests) * len(render_s)
    if len(requests) != len(render_s):
        raise ValueError("give one --requests value, or one per --render-s value")
    runs = []
    for hold_s, count in zip(render_s, requests, strict=True):
        run: dict[str, Any] = {"render_s": hold_s, "requests": count}
        for mode, (inflight, finishing) in MODES.items():
            run[mode] = await _one_mode(
                infra,
                hold_s=hold_s,
                count=count,
                inflight=inflight,
                finishing=finishing,
                video=video,
                checkpoint_interval_s=checkpoint_interval_s,
            )
            if not timeline:
                run[mode].pop("timeline")
        run["idle_cut_by_pipelining"] = _compare(run["pipelined"], run["sequential"])
        runs.append(run)
    return {
        "benchmark": "duty_cycle",
        "video": video,
        "warmup_renders": WARMUP_RENDERS,
        "checkpoint_interval_s": checkpoint_interval_s,
        "runs": runs,
    }


async def _one_mode(
    infra: Infra,
    *,
    hold_s: float,
    count: int,
    inflight: int,
    finishing: int,
    video: dict[str, int],
    checkpoint_interval_s: float,
) -> dict[str, Any]:
    settings = new_run(infra, f"duty-{inflight}")
    bodies = make_requests("duty", count, video=video)
    ids = [body["request_id"] for body in bodies]
    async with Client(settings) as client:
        await client.send(bodies)  # the whole backlog waits before the worker starts
        started = time.monotonic()
        stages = {
            "VIDGEN_MAX_FINISHING_JOBS": str(finishing),
            "VIDGEN_CHECKPOINT_INTERVAL_S": str(checkpoint_interval_s),
        }
        async with running_workers(infra, settings, 1, render_s=hold_s, max_inflight=inflight, extra=stages) as workers:
            if not await client.wait_for(ids, timeout_s=120 + count * (hold_s + 5)):
                raise TimeoutError(f"{len(set(ids) - client.answered())} of {count} requests unanswered")
            checkpoints = await workers[0].metric("vidgen_checkpoints_total")
        wall = time.monotonic() - started
        results = list(client.first_results(ids).values())
    statuses = {result.result.status for result in results}
    if statuses != {"completed"}:
        raise RuntimeError(f"unexpected result statuses {statuses}")
    (intervals,) = render_intervals(results).values()  # one worker
    summary = summarise(intervals, hold_s=hold_s, inflight=inflight, wall_s=wall, results=results)
    return {"max_finishing_jobs": finishing, "checkpoints_written": int(checkpoints), **summary}


def summarise(
    intervals: list[tuple[float, float]],
    *,
    hold_s: float,
    inflight: int,
    wall_s: float,
    results: Sequence[Arrival] = (),
) -> dict[str, Any]:
    """The figures of one worker's run from its (render_started_at, render_finished_at) intervals, epoch s."""
    ordered = sorted(intervals)
    kept = ordered[WARMUP_RENDERS:] if len(ordered) > WARMUP_RENDERS + 1 else ordered
    rendering = stats.duty_cycle(kept)
    holds = stats.holds([start for start, _ in kept], hold_s)
    held = stats.duty_cycle(holds)
    idle_between = stats.gaps(holds)
    origin = kept[0][0]
    after_hold = [end - start - hold_s for start, end in kept]
    encode_ms = [r.result.timings.encode_ms for r in results if r.result.timings.encode_ms is not None]
    upload_ms = [r.result.timings.upload_ms for r in results if r.result.timings.upload_ms is not None]
    return {
        "max_inflight_jobs": inflight,
        "renders": len(kept),
        "wall_s": round(wall_s, 2),
        "span_s": round(held.span_s, 3),
        "hold_fraction": _fraction(held),
        "largest_idle_between_holds_s": round(held.largest_gap_s, 4),
        "median_idle_between_holds_s": round(statistics.median(idle_between), 4) if idle_between else 0.0,
        "idle_stretches_over_10ms": held.gaps_over_10ms,
        "render_fraction": _fraction(rendering),
        "largest_gap_s": round(rendering.largest_gap_s, 4),
        "renders_per_min": round(60 * len(kept) / held.span_s, 2) if held.span_s else None,
        # From the model's release to render_finished_at: the 8-bit conversion, off the model.
        "median_after_hold_ms": round(statistics.median(after_hold) * 1000, 1),
        "median_encode_ms": statistics.median(encode_ms) if encode_ms else None,
        "median_upload_ms": statistics.median(upload_ms) if upload_ms else None,
        "timeline": {
            "render": [[round(start - origin, 3), round(end - origin, 3)] for start, end in kept],
            "hold": [[round(start - origin, 3), round(end - origin, 3)] for start, end in holds],
        },
    }


def _fraction(duty: DutyCycle) -> float:
    return round(duty.fraction, 4)


def _compare(pipelined: dict[str, Any], sequential: dict[str, Any]) -> dict[str, Any]:
    return {
        "hold_fraction_gain": round(pipelined["hold_fraction"] - sequential["hold_fraction"], 4),
        "throughput_ratio": round(pipelined["renders_per_min"] / sequential["renders_per_min"], 3)
        if pipelined["renders_per_min"] and sequential["renders_per_min"]
        else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--render-s", type=float, nargs="+", default=list(DEFAULT_RENDER_S))
    parser.add_argument("--requests", type=int, nargs="+", default=list(DEFAULT_REQUESTS))
    parser.add_argument("--no-timeline", action="store_true", help="leave the per-render intervals out")
    parser.add_argument(
        "--checkpoint-interval-s", type=float, default=0.0, help="periodic render checkpoints (0: none)"
    )
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await measure(
                infra,
                render_s=args.render_s,
                requests=args.requests,
                timeline=not args.no_timeline,
                checkpoint_interval_s=args.checkpoint_interval_s,
            )

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
