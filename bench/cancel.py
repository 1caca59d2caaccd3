"""Request controls: how soon a cancel frees the render slot, and what the crash guard's write costs.

1. Cancel to free slot. One worker process (`VIDGEN_MODEL=standin`, one render slot: `VIDGEN_MAX_INFLIGHT_JOBS=1`)
   with a backlog of requests whose stand-in render holds R seconds over S denoising steps. For each of N cancels:
   wait until the rendering request has reported its first step, wait a random fraction of a step more (so cancels
   land anywhere in a step), publish its cancel to the control topic and time until the next request's `started`
   progress event (the worker sends it once the freed slot started that request, after the crash guard's acked
   write), its first denoising step, and the cancelled request's `failed`/`cancelled` result.
2. The crash guard's write. The acknowledged produce a worker makes before each request (`CrashGuardLedger.started`)
   and the tombstone after its answer (`CrashGuardLedger.answered`), with the worker's own producer settings (acks=all,
   linger 5 ms), sequentially, against the same broker.

    python -m bench.cancel [--cancels 20] [--render-s 2.0] [--steps 20] [--writes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from bench.client import SMALL, Client, make_requests, partitions_of
from bench.infra import Infra, embedded_infra, machine_info, new_run
from bench.stats import summary
from bench.workers import running_workers
from consumer.core.clock import utc_now
from consumer.crash_guard.counts import StartCounts
from consumer.crash_guard.ledger import CrashGuardLedger
from consumer.kafka.clients import client_options, make_producer
from consumer.kafka.worker_publisher import WorkerPublisher
from consumer.settings import Settings
from schemas.events import VideoControl, VideoProgress

__all__ = ["main", "measure"]


async def measure(infra: Infra, *, cancels: int, render_s: float, steps: int, writes: int) -> dict[str, Any]:
    return {
        "benchmark": "cancel",
        "machine": machine_info(),
        "cancel_to_free_slot": await _cancels(infra, cancels=cancels, render_s=render_s, steps=steps),
        "attempt_writes": await _writes(infra, writes=writes),
    }


async def _cancels(infra: Infra, *, cancels: int, render_s: float, steps: int) -> dict[str, Any]:
    settings = new_run(infra, "cancel")
    bodies = make_requests("cancel", cancels + 1, video=SMALL, steps=steps)
    step_s = render_s / steps
    rng = random.Random(14)  # where in a step a cancel lands
    to_started, to_first_step, to_result = [], [], []
    cancelled: set[str] = set()
    extra = {"VIDGEN_PROGRESS_INTERVAL_S": "0"}  # every step reported: the first step is seen as it ends
    async with (
        Client(settings) as client,
        _progress(settings) as progress,
        running_workers(infra, settings, 1, render_s=render_s, max_inflight=1, extra=extra),
    ):
        producer = make_producer(settings)
        await producer.start()
        try:
            await client.send(bodies, round_robin=True, first_partition=0)
            for _ in range(cancels):
                running = await _rendering(progress, exclude=cancelled)
                await asyncio.sleep(rng.uniform(0, step_s))
                command = VideoControl(action="cancel", request_id=running, tenant_id="bench", requested_at=utc_now())
                cancelled_at = time.time()
                await producer.send_and_wait(
                    settings.control_topic, key=running.encode(), value=command.model_dump_json().encode()
                )
                cancelled.add(running)
                nxt = await _next_started(progress, after=cancelled_at, exclude=cancelled)
                to_started.append(progress.started[nxt] - cancelled_at)
                to_first_step.append(await _first_step(progress, nxt) - cancelled_at)
                if not await client.wait_for([running], timeout_s=30):
                    raise TimeoutError(f"no result for cancelled {running}")
                result = client.first_results([running])[running]
                if result.result.error is None or result.result.error.code != "cancelled":
                    raise RuntimeError(f"{running} was not cancelled: {result.result.status}")
                to_result.append(result.arrived_at - cancelled_at)
        finally:
            await producer.stop()
    return {
        "cancels": cancels,
        "render_s": render_s,
        "steps": steps,
        "step_ms": round(step_s * 1000, 1),
        "control_fetch_wait_ms": 50,
        "cancel_to_next_started_ms": summary(to_started, scale=1000, digits=1),
        "cancel_to_next_first_step_ms": summary(to_first_step, scale=1000, digits=1),
        "cancel_to_cancelled_result_ms": summary(to_result, scale=1000, digits=1),
    }


class _Progress:
    """Progress events as they arrive: when each request started (the worker's `at`) and its steps."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.steps: dict[str, list[tuple[int, float]]] = {}
        self.changed = asyncio.Event()

    def add(self, event: VideoProgress) -> None:
        at = event.at.timestamp()
        if event.event == "started":
            self.started.setdefault(event.request_id, at)
        else:
            self.steps.setdefault(event.request_id, []).append((event.step, at))
        self.changed.set()

    async def until(self, found: Any) -> Any:
        async with asyncio.timeout(60):
            while (value := found()) is None:
                self.changed.clear()
                await self.changed.wait()
            return value


@contextlib.asynccontextmanager
async def _progress(settings: Settings) -> AsyncIterator[_Progress]:
    seen = _Progress()
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest", fetch_max_wait_ms=10)
    await consumer.start()

    async def follow() -> None:
        partitions = await partitions_of(consumer, settings.progress_topic)
        consumer.assign([TopicPartition(settings.progress_topic, p) for p in partitions])
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    seen.add(VideoProgress.model_validate_json(record.value))

    task = asyncio.create_task(follow())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


async def _rendering(progress: _Progress, *, exclude: set[str]) -> str:
    """The request that has reported a denoising step and is not cancelled yet."""

    def found() -> str | None:
        return next((rid for rid, steps in progress.steps.items() if rid not in exclude and steps), None)

    result: str = await progress.until(found)
    return result


async def _next_started(progress: _Progress, *, after: float, exclude: set[str]) -> str:
    def found() -> str | None:
        return next((rid for rid, at in progress.started.items() if rid not in exclude and at >= after), None)

    result: str = await progress.until(found)
    return result


async def _first_step(progress: _Progress, request_id: str) -> float:
    def found() -> float | None:
        steps = progress.steps.get(request_id)
        return steps[0][1] if steps else None

    result: float = await progress.until(found)
    return result


async def _writes(infra: Infra, *, writes: int) -> dict[str, Any]:
    """The ledger's two writes per request, each awaited as the worker awaits them."""
    settings = new_run(infra, "attempts")
    async with Client(settings):  # creates the run's topics, the attempts topic among them
        producer = make_producer(settings)
        await producer.start()
        try:
            ledger = CrashGuardLedger(WorkerPublisher(producer, settings), StartCounts(), settings)
            started, answered = [], []
            for offset in range(writes):
                partition = offset % settings.topic_partitions
                record = ConsumerRecord(settings.requests_topic, partition, offset, 0, 0, None, None, None, 0, 0, [])
                began = time.perf_counter()
                await ledger.started(record)
                middle = time.perf_counter()
                await ledger.answered(record)
                started.append(middle - began)
                answered.append(time.perf_counter() - middle)
        finally:
            await producer.stop()
    return {
        "writes": writes,
        "producer": {"acks": "all", "linger_ms": 5, "enable_idempotence": False},
        "started_ms": summary(started, scale=1000, digits=2),
        "answered_tombstone_ms": summary(answered, scale=1000, digits=2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cancels", type=int, default=20)
    parser.add_argument("--render-s", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await measure(
                infra, cancels=args.cancels, render_s=args.render_s, steps=args.steps, writes=args.writes
            )

    print(json.dumps(asyncio.run(run())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
