"""Benchmark 5 (delivery guarantees): thousands of requests through several workers while workers are killed with
SIGKILL at random and restarted. Nothing may be lost; duplicates are allowed (at-least-once) and counted.

Requests are produced at a steady rate while a chaos loop kills a random ready worker (kill -9 of its process
group) every few seconds and starts a replacement at once. Killing stops when every request has a result, after
`--max-kills`, or after `--chaos-s`; then the run settles (no more kills) until every request has a result or
`--settle-s` passes, and lingers a few seconds to catch late duplicates. "lost" = sent ids with no result.

    python -m bench.soak [--requests 2000] [--workers 3] [--render-s 0.05] [--kill-every 3 7]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.client import SMALL, Client, make_requests
from bench.infra import Infra, embedded_infra, new_run
from bench.workers import WorkerProcess, stop_workers, worker_env
from consumer.dev.embedded import free_port
from consumer.settings import Settings

__all__ = ["main", "measure"]

_LINGER_S = 3.0  # after the last answer: time for duplicates still in flight to show up


@dataclass
class _Incarnation:
    """One process in a worker slot; a kill ends it and the slot gets a new one."""

    worker: WorkerProcess
    ready: asyncio.Task[None]
    rss_ready_mb: float | None = None
    rss_last_mb: float | None = None
    lifetime_s: float = 0.0

    def on_ready(self) -> None:
        if not self.ready.cancelled() and self.ready.exception() is None:
            self.read_rss()

    def is_ready(self) -> bool:
        return self.ready.done() and not self.ready.cancelled() and self.ready.exception() is None

    def read_rss(self) -> None:
        with contextlib.suppress(psutil.Error, RuntimeError):
            rss = self.worker.rss_mb()
            if self.rss_ready_mb is None:
                self.rss_ready_mb = rss
            self.rss_last_mb = rss


@dataclass
class _Pool:
    infra: Infra
    settings: Settings
    render_s: float
    slots: list[_Incarnation] = field(default_factory=list)
    ended: list[_Incarnation] = field(default_factory=list)
    generation: int = 0

    def start(self, slot: int) -> _Incarnation:
        self.generation += 1
        worker_id = f"w{slot}-g{self.generation}"
        worker = WorkerProcess(
            worker_env(self.settings, worker_id=worker_id, http_port=free_port(), render_s=self.render_s),
            self.infra.log_dir / f"{self.settings.consumer_group}-{worker_id}.log",
        )
        worker.start()
        incarnation = _Incarnation(worker, asyncio.create_task(worker.wait_ready()))
        incarnation.ready.add_done_callback(lambda _: incarnation.on_ready())
        return incarnation

    def restart_exited(self) -> int:
        """Replace workers that died on their own (not killed by us); how many there were."""
        exited = [slot for slot, inc in enumerate(self.slots) if not inc.worker.alive()]
        for slot in exited:
            self.kill(slot)
        return len(exited)

    def kill(self, slot: int) -> None:
        victim = self.slots[slot]
        victim.read_rss()
        victim.worker.kill()
        victim.lifetime_s = time.monotonic() - victim.worker.started_at
        self.ended.append(victim)
        self.slots[slot] = self.start(slot)

    def close(self) -> None:
        for incarnation in self.slots:
            incarnation.read_rss()
            incarnation.lifetime_s = time.monotonic() - incarnation.worker.started_at
            incarnation.ready.cancel()
        stop_workers((incarnation.worker for incarnation in self.slots), grace_s=0)


async def measure(
    infra: Infra,
    *,
    requests: int = 2000,
    workers: int = 3,
    render_s: float = 0.05,
    kill_every: tuple[float, float] = (3.0, 7.0),
    max_kills: int | None = None,
    chaos_s: float = 240.0,
    settle_s: float = 180.0,
    rate_per_s: float = 40.0,
    seed: int | None = None,
    video: dict[str, int] = SMALL,
) -> dict[str, Any]:
    rng = random.Random(seed)
    settings = new_run(infra, "soak")
    bodies = make_requests("soak", requests, video=video)
    ids = [body["request_id"] for body in bodies]
    pool = _Pool(infra, settings, render_s)
    kills = unexpected_exits = 0
    async with Client(settings) as client:
        try:
            pool.slots = [pool.start(slot) for slot in range(workers)]
            await asyncio.gather(*(incarnation.ready for incarnation in pool.slots))
            started = time.monotonic()
            producing = asyncio.create_task(_produce(client, bodies, rate_per_s))
            sampling = asyncio.create_task(_sample(pool))
            try:
                chaos_end = started + chaos_s
                while time.monotonic() < chaos_end and (max_kills is None or kills < max_kills):
                    pause = rng.uniform(*kill_every)
                    if await client.wait_for(ids, timeout_s=pause):
                        break
                    unexpected_exits += pool.restart_exited()
                    candidates = [slot for slot, inc in enumerate(pool.slots) if inc.is_ready()]
                    if candidates:
                        pool.kill(rng.choice(candidates))
                        kills += 1
                chaos_over = time.monotonic() - started
                await producing
                settled = await client.wait_for(ids, timeout_s=settle_s)
                finished = time.monotonic() - started
                await asyncio.sleep(_LINGER_S)
            finally:
                producing.cancel()
                sampling.cancel()
        finally:
            pool.close()
    return _report(
        client,
        ids,
        pool,
        kills=kills,
        unexpected_exits=unexpected_exits,
        settled=settled,
        finished_s=finished,
        chaos_s=chaos_over,
        params={
            "workers": workers,
            "render_s": render_s,
            "kill_every_s": list(kill_every),
            "rate_per_s": rate_per_s,
            "video": video,
        },
    )


async def _produce(client: Client, bodies: list[dict[str, Any]], rate_per_s: float) -> None:
    batch = max(1, int(rate_per_s / 10))
    for start in range(0, len(bodies), batch):
        await client.send(bodies[start : start + batch])
        await asyncio.sleep(batch / rate_per_s)


async def _sample(pool: _Pool) -> None:
    while True:
        for incarnation in pool.slots:
            if incarnation.is_ready():
                incarnation.read_rss()
        await asyncio.sleep(1.0)


def _report(
    client: Client,
    ids: list[str],
    pool: _Pool,
    *,
    kills: int,
    unexpected_exits: int,
    settled: bool,
    finished_s: float,
    chaos_s: float,
    params: dict[str, Any],
) -> dict[str, Any]:
    sent = set(ids)
    per_id = collections.Counter(arrival.request_id for arrival in client.arrivals if arrival.request_id in sent)
    first = client.first_results(ids)
    # A duplicate must say the same thing: same status and the same video object (content-addressed key).
    answers: dict[str, set[tuple[str, str | None]]] = collections.defaultdict(set)
    for arrival in client.arrivals:
        if arrival.request_id in sent:
            video = arrival.result.video
            answers[arrival.request_id].add((arrival.result.status, video.uri if video else None))
    statuses = collections.Counter(arrival.result.status for arrival in first.values())
    errors = collections.Counter(arrival.result.error.code for arrival in first.values() if arrival.result.error)
    incarnations = [*pool.ended, *pool.slots]
    handled = collections.Counter(arrival.result.worker_id for arrival in client.arrivals)
    measured = [inc for inc in incarnations if inc.rss_ready_mb is not None and inc.rss_last_mb is not None]
    busiest = max(measured, key=lambda inc: handled[inc.worker.worker_id], default=None)
    return {
        "benchmark": "soak",
        **params,
        "sent": len(sent),
        "completed": len(first),  # unique request ids with a terminal result
        "statuses": dict(statuses),
        "error_codes": dict(errors),
        "duplicated": sum(count - 1 for count in per_id.values()),
        "requests_with_duplicates": sum(1 for count in per_id.values() if count > 1),
        "duplicates_differing": sum(1 for seen in answers.values() if len(seen) > 1),
        "cache_hits": sum(1 for arrival in client.arrivals if arrival.result.cache_hit),
        "lost": len(sent - set(first)),
        "settled": settled,
        "kills": kills,
        "kills_survived": kills if settled else None,
        "unexpected_worker_exits": unexpected_exits,
        "chaos_s": round(chaos_s, 1),
        "wall_s": round(finished_s, 1),
        "throughput_per_s": round(len(first) / finished_s, 2) if finished_s else None,
        "worker_processes": len(incarnations),
        # Ready -> last reading of each worker process (killed ones: just before the kill). A fresh worker grows
        # ~50 MB over its first few dozen requests (see bench.resources), so short lives show mostly warm-up.
        "rss_growth_mb": {
            "max": round(max((_growth(inc) for inc in measured), default=0.0), 1),
            "busiest_worker": {
                "worker_id": busiest.worker.worker_id,
                "results": handled[busiest.worker.worker_id],
                "lifetime_s": round(busiest.lifetime_s, 1),
                "rss_ready_mb": busiest.rss_ready_mb,
                "rss_last_mb": busiest.rss_last_mb,
                "growth_mb": round(_growth(busiest), 1),
            }
            if busiest
            else None,
        },
        "max_rss_mb": max((inc.rss_last_mb or 0.0 for inc in incarnations), default=None),
    }


def _growth(incarnation: _Incarnation) -> float:
    return (incarnation.rss_last_mb or 0.0) - (incarnation.rss_ready_mb or 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--render-s", type=float, default=0.05)
    parser.add_argument("--kill-every", type=float, nargs=2, default=[3.0, 7.0], metavar=("MIN_S", "MAX_S"))
    parser.add_argument("--max-kills", type=int, default=None)
    parser.add_argument("--chaos-s", type=float, default=240.0, help="stop killing after this long")
    parser.add_argument("--settle-s", type=float, default=180.0, help="then wait this long for the rest")
    parser.add_argument("--rate", type=float, default=40.0, help="requests produced per second")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await measure(
                infra,
                requests=args.requests,
                workers=args.workers,
                render_s=args.render_s,
                kill_every=(args.kill_every[0], args.kill_every[1]),
                max_kills=args.max_kills,
                chaos_s=args.chaos_s,
                settle_s=args.settle_s,
                rate_per_s=args.rate,
                seed=args.seed,
            )

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
