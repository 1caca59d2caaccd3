"""What share of a job's time each phase of the worker's work takes: the weights of the progress bar
(`consumer.core.progress_phases.PHASE_SHARES`).

One worker process with the tiny model (real diffusers pipeline, tiny random weights) renders requests one at a time;
its progress events (`VIDGEN_PROGRESS_INTERVAL_S=0`: one per step) and results are read back from the topics. Each
phase lasts from the worker's event that starts it to the next: `preparing` from the result's `received_at` to the
start of the first step (the first step's event less one mean step), `denoising` to the last step's event (which
starts `decoding`), then `encoding`, `uploading` and the result's `completed_at`. Shares are per job, median over
the jobs, in percent of received -> completed.

    python -m bench.phase_shares [--jobs 5] [--size 256x256] [--frames 9] [--steps 12]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.client import Client, make_requests
from bench.infra import embedded_infra, machine_info, new_run, print_report
from bench.workers import running_workers
from consumer.kafka.clients import client_options
from schemas.events import ProgressPhase, VideoProgress, VideoResult

__all__ = ["main", "phase_seconds"]

_PHASES: tuple[ProgressPhase, ...] = ("preparing", "denoising", "decoding", "encoding", "uploading")


def phase_seconds(events: list[VideoProgress], result: VideoResult) -> dict[ProgressPhase, float]:
    """Seconds of each phase of one job, from its progress events and its result."""
    steps = sorted((event for event in events if event.phase == "denoising"), key=lambda event: event.step)
    starts = {event.phase: event.at for event in events if event.phase in ("decoding", "encoding", "uploading")}
    first, last = steps[0], starts["decoding"]
    step_s = (last - first.at).total_seconds() / max(1, first.total - first.step)
    denoising_from = first.at.timestamp() - step_s
    bounds: list[float] = [
        result.timings.received_at.timestamp(),
        denoising_from,
        last.timestamp(),
        starts["encoding"].timestamp(),
        starts["uploading"].timestamp(),
        result.timings.completed_at.timestamp(),
    ]
    return {phase: max(0.0, bounds[index + 1] - bounds[index]) for index, phase in enumerate(_PHASES)}


async def measure(*, jobs: int, width: int, height: int, frames: int, steps: int) -> dict[str, Any]:
    with embedded_infra() as infra:
        settings = new_run(infra, "phases")
        extra = {"VIDGEN_MODEL": "tiny", "VIDGEN_PROGRESS_INTERVAL_S": "0"}
        progress: dict[str, list[VideoProgress]] = {}
        async with (
            Client(settings) as client,
            running_workers(infra, settings, 1, render_s=0.0, extra=extra),
        ):
            reader = asyncio.create_task(_read_progress(settings.progress_topic, client, progress))
            video = {"width": width, "height": height, "num_frames": frames}
            bodies = make_requests("phases", jobs + 1, video=video, steps=steps)  # the first one warms up
            for body in bodies:
                await client.send([body])
                if not await client.wait_for([body["request_id"]], timeout_s=600):
                    raise TimeoutError(f"no result for {body['request_id']}")
            await asyncio.sleep(1)  # the last progress events are sent without waiting for the ack
            reader.cancel()
            results = client.first_results([body["request_id"] for body in bodies[1:]])
    per_job = [phase_seconds(progress[job_id], arrival.result) for job_id, arrival in results.items()]
    shares = [{phase: 100 * value / sum(job.values()) for phase, value in job.items()} for job in per_job]
    return {
        "benchmark": "phase_shares",
        "machine": machine_info(),
        "model": "tiny",
        "video": {**video, "steps": steps},
        "jobs": len(per_job),
        "job_s_median": round(statistics.median(sum(job.values()) for job in per_job), 3),
        "phase_s_median": {phase: round(statistics.median(job[phase] for job in per_job), 3) for phase in _PHASES},
        "share_percent_median": {phase: round(statistics.median(job[phase] for job in shares), 1) for phase in _PHASES},
    }


async def _read_progress(topic: str, client: Client, into: dict[str, list[VideoProgress]]) -> None:
    consumer = AIOKafkaConsumer(
        topic, **client_options(client.settings), auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        async for record in consumer:
            if record.value is not None:
                event = VideoProgress.model_validate_json(record.value)
                into.setdefault(event.request_id, []).append(event)
    finally:
        await consumer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.phase_shares", description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--size", default="256x256", help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    width, height = (int(value) for value in args.size.split("x"))
    report = asyncio.run(measure(jobs=args.jobs, width=width, height=height, frames=args.frames, steps=args.steps))
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
