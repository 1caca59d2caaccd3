"""Benchmark: GPU-seconds thrown away per kill -9 and per SIGTERM, without and with render checkpoints.

A soak with stand-in workers (renders of R seconds in S steps, so a "GPU-second" is a second a worker's render thread
held the model): N requests through W workers while a chaos loop stops a random busy worker every few seconds and
starts a replacement at once, as a node drain, an upgrade or a spot reclaim would. Four runs on fresh topics:

- `kill9` (SIGKILL, no notice) and `sigterm` (SIGTERM, SIGKILL `--grace-s` later: the notice is shorter than a
  render, as a spot reclaim's 30 s against renders of minutes; the worker's `VIDGEN_SHUTDOWN_GRACE_S` is set to fit);
- `before` (`VIDGEN_CHECKPOINTS=false`: a render not finished within the notice is thrown away, a killed one too) and
  `after` (checkpoints on, periodic every `--interval-s`).

Work thrown away = denoising steps rendered beyond one render's steps per request, times the step time; the steps come
from the progress events (`VIDGEN_PROGRESS_INTERVAL_S=0`: one per step, counted once per worker process), so a
step a killed worker rendered but never reported is missed in both modes alike.

    python -m bench.checkpoint_loss [--requests 30] [--workers 2] [--render-s 4] [--steps 16] [--kill-every 4 6]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.client import SMALL, Client, make_requests
from bench.infra import Infra, new_run, run_on_embedded_infra
from bench.workers import WorkerProcess, stop_workers, worker_env
from consumer.dev.embedded import free_port
from consumer.kafka.clients import client_options
from consumer.settings import Settings
from schemas.events import VideoProgress

__all__ = ["Load", "main", "measure"]

MODES = [(stop, checkpoints) for checkpoints in (False, True) for stop in ("kill9", "sigterm")]


@dataclass(frozen=True)
class Load:
    """What each of the four runs sends and how its workers are stopped."""

    requests: int
    workers: int
    render_s: float
    steps: int
    kill_every: tuple[float, float]
    interval_s: float
    grace_s: float


async def measure(infra: Infra, load: Load, *, seed: int) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for stop, checkpoints in MODES:
        label = f"{stop}_{'after' if checkpoints else 'before'}"
        runs[label] = await _run(infra, load, stop=stop, checkpoints=checkpoints, rng=random.Random(seed))
    return {
        "benchmark": "checkpoint_loss",
        "parameters": {
            "requests": load.requests,
            "workers": load.workers,
            "render_s": load.render_s,
            "steps": load.steps,
            "step_s": round(load.render_s / load.steps, 3),
            "kill_every_s": list(load.kill_every),
            "periodic_checkpoint_interval_s": load.interval_s,
            "sigterm_notice_s": load.grace_s,
            "renderer": "standin (holds the thread R seconds over S steps; its latents are EasyAnimate-shaped)",
        },
        "runs": runs,
    }


async def _run(infra: Infra, load: Load, *, stop: str, checkpoints: bool, rng: random.Random) -> dict[str, Any]:
    settings = new_run(infra, f"loss-{stop}-{int(checkpoints)}")
    extra = {
        "VIDGEN_CHECKPOINTS": str(checkpoints).lower(),
        "VIDGEN_CHECKPOINT_INTERVAL_S": str(load.interval_s),
        "VIDGEN_PROGRESS_INTERVAL_S": "0",
        "VIDGEN_SHUTDOWN_GRACE_S": str(max(0.1, load.grace_s - 0.5)),
        # the chaos kills random renders, not poison requests: the crash guard would answer a request killed twice
        "VIDGEN_MAX_WORKER_CRASHES": "1000",
    }
    bodies = make_requests("loss", load.requests, video=SMALL, steps=load.steps)
    ids = [body["request_id"] for body in bodies]
    generation = 0
    stops: list[asyncio.Task[None]] = []

    def start(slot: int) -> WorkerProcess:
        nonlocal generation
        generation += 1
        env = worker_env(
            settings, worker_id=f"w{slot}-g{generation}", http_port=free_port(), render_s=load.render_s, extra=extra
        )
        worker = WorkerProcess(env, infra.log_dir / f"{settings.consumer_group}-w{slot}-g{generation}.log")
        worker.start()
        return worker

    async with Client(settings) as client:
        pool = [start(slot) for slot in range(load.workers)]
        try:
            await asyncio.gather(*(worker.wait_ready() for worker in pool))
            started = time.monotonic()
            await client.send(bodies, round_robin=True)
            kills = 0
            while not await client.wait_for(ids, timeout_s=rng.uniform(*load.kill_every)):
                busy = [slot for slot, worker in enumerate(pool) if await _rendering(worker)]
                if not busy:
                    continue
                slot = rng.choice(busy)
                victim, pool[slot] = pool[slot], start(slot)
                kills += 1
                if stop == "kill9":
                    victim.kill()
                else:  # SIGTERM now, SIGKILL when the notice runs out; the replacement starts meanwhile
                    stops.append(asyncio.create_task(asyncio.to_thread(victim.stop, grace_s=load.grace_s)))
            wall_s = time.monotonic() - started
            await asyncio.gather(*stops)
        finally:
            stop_workers(pool, grace_s=0)
        first = client.first_results(ids)
    rendered = await _steps_rendered(settings, set(ids))
    thrown_steps = max(0, rendered - load.steps * len(first))
    step_s = load.render_s / load.steps
    return {
        "stops": kills,
        "completed": sum(arrival.result.status == "completed" for arrival in first.values()),
        "failed": dict(Counter(arrival.result.error.code for arrival in first.values() if arrival.result.error)),
        "lost": len(set(ids) - set(first)),
        "resumed": sum(arrival.result.resumed_from_step is not None for arrival in first.values()),
        "steps_rendered": rendered,
        "steps_needed": load.steps * len(first),
        "gpu_s_thrown_away": round(thrown_steps * step_s, 2),
        "gpu_s_thrown_away_per_stop": round(thrown_steps * step_s / kills, 2) if kills else None,
        "wall_s": round(wall_s, 1),
    }


async def _rendering(worker: WorkerProcess) -> bool:
    """The worker is mid-render (a step of a render is reported on its metrics as an in-flight job)."""
    try:
        return worker.alive() and await worker.metric("vidgen_inflight_jobs") > 0
    except (OSError, ValueError):
        return False


async def _steps_rendered(settings: Settings, ids: set[str]) -> int:
    """Distinct (worker, request, step) of the run's progress events: each step a worker process rendered. Read to
    the high watermark each fetch reports (tansu's ListOffsets answers are unreliable after batched produces)."""
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    seen: set[tuple[str, str, int]] = set()
    try:
        await consumer.topics()
        topic = settings.progress_topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(partitions)
        done: set[TopicPartition] = set()
        while len(done) < len(partitions):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = VideoProgress.model_validate_json(record.value)
                    if event.event == "progress" and event.request_id in ids:
                        seen.add((event.worker_id, event.request_id, event.step))
            for tp in partitions:
                end = consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    done.add(tp)
    finally:
        await consumer.stop()
    return len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--render-s", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--kill-every", type=float, nargs=2, default=[4.0, 6.0], metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--interval-s", type=float, default=1.0, help="periodic checkpoints in the `after` runs")
    parser.add_argument("--grace-s", type=float, default=1.5, help="SIGTERM notice before SIGKILL")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    return run_on_embedded_infra(
        lambda infra: measure(
            infra,
            Load(
                requests=args.requests,
                workers=args.workers,
                render_s=args.render_s,
                steps=args.steps,
                kill_every=(args.kill_every[0], args.kill_every[1]),
                interval_s=args.interval_s,
                grace_s=args.grace_s,
            ),
            seed=args.seed,
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
