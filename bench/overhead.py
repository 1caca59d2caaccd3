"""Benchmark 2: what the worker's path costs around an instant render, against a floor measured in the same run.

Worker path: one worker with the stand-in renderer at R = 0 and small frames (256x256x5): produce a request,
the worker fetches it, looks the content key up in S3, "renders", encodes the MP4 and poster, uploads both,
presigns, publishes the result (acks=all) and commits. Floor: a minimal loop in this process doing only the same
I/O: consume the request, PUT two objects the sizes of the worker's poster and MP4 (poster first, as the worker
does), and produce a record the size of the worker's result, with as many jobs in flight as the worker may have
(its render plus finishing slots). What the worker adds is its own work: the cache lookup, encoding, presigning,
validation, telemetry and commits. Both are measured through the same real broker and S3 server:

- throughput: a backlog of N requests produced at once, N / (last result - first send);
- latency: one request at a time (closed loop, after a random 0-0.5 s pause so requests land at random points
  of the consumer's fetch cycle), produce -> result seen by a consumer, p50/p99.

On tansu a fetch is answered only when its max wait (aiokafka's default 500 ms, which the worker keeps) runs out,
even when records arrived meanwhile; Apache Kafka answers at once. So an idle consumer picks a record up 0-500 ms
late. The floor keeps the worker's fetch wait so the ratio compares like with like; `floor_short_fetch_wait`
(10 ms) shows how much of the latency that broker behaviour is. The collector of results uses 10 ms throughout.

    python -m bench.overhead [--requests 200] [--latency-samples 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import stats
from bench.client import SMALL, Client, make_requests, partitions_of
from bench.infra import Infra, embedded_infra, new_run
from bench.workers import running_workers
from consumer.kafka.clients import client_options
from consumer.object_store import open_s3_client
from consumer.settings import Settings
from schemas.events import VideoResult

__all__ = ["main", "measure"]

WARMUP = 20
WORKER_FETCH_WAIT_MS = 500  # aiokafka's default, which the worker's consumer keeps
# The most jobs the worker has in flight: its default render plus finishing slots (defaults, not the environment).
INFLIGHT = sum(Settings.model_fields[name].default for name in ("max_inflight_jobs", "max_finishing_jobs"))
THINK_MAX_S = 0.5  # the longest random pause before each latency sample


async def measure(
    infra: Infra,
    *,
    requests: int = 200,
    latency_samples: int = 60,
    warmup: int = WARMUP,
    video: dict[str, int] = SMALL,
) -> dict[str, Any]:
    settings = new_run(infra, "overhead")
    async with Client(settings) as client, running_workers(infra, settings, 1, render_s=0.0) as (process,):
        worker = await _phases(
            client, requests=requests, samples=latency_samples, warmup=warmup, video=video, cpu_of=process.pid
        )
        arrivals = [arrival.result for arrival in client.arrivals]
    sizes = [result.video.bytes for result in arrivals if result.video is not None]
    template = arrivals[-1]
    object_bytes = int(statistics.median(sizes))
    poster_bytes = await _object_size(settings, template)

    floors = {}
    for name, fetch_wait_ms in (("floor", WORKER_FETCH_WAIT_MS), ("floor_short_fetch_wait", 10)):
        settings = new_run(infra, "floor")
        async with (
            Client(settings) as client,
            _floor(
                settings,
                template=template,
                sizes=(poster_bytes, object_bytes),
                fetch_wait_ms=fetch_wait_ms,
            ),
        ):
            # The floor's CPU is this whole process: the floor loop plus the producer and the result collector.
            floors[name] = await _phases(
                client, requests=requests, samples=latency_samples, warmup=warmup, video=video, cpu_of=os.getpid()
            )
            floors[name].pop("latency_stages_p50_ms")  # the floor echoes a template's timings
            floors[name]["fetch_max_wait_ms"] = fetch_wait_ms
    floor = floors["floor"]

    return {
        "benchmark": "overhead",
        "video": video,
        "requests": requests,
        "latency_samples": latency_samples,
        "object_bytes": object_bytes,
        "poster_bytes": poster_bytes,
        "floor_inflight": INFLIGHT,
        "result_record_bytes": len(template.model_dump_json().encode()),
        "worker": worker,
        **floors,
        "ratio_to_floor": {
            "throughput": _ratio(worker["throughput_per_s"], floor["throughput_per_s"]),
            "latency_p50": _ratio(worker["latency_ms"]["p50"], floor["latency_ms"]["p50"]),
            "latency_p99": _ratio(worker["latency_ms"]["p99"], floor["latency_ms"]["p99"]),
        },
    }


async def _phases(
    client: Client, *, requests: int, samples: int, warmup: int, video: dict[str, int], cpu_of: int
) -> dict[str, Any]:
    if warmup:
        await _backlog(client, make_requests("warm", warmup, video=video))
    latencies, stages = [], []
    for body in make_requests("lat", samples, video=video):
        # A random pause first: requests arrive at random points of the consumer's fetch cycle, not in step.
        await asyncio.sleep(random.uniform(0, THINK_MAX_S))
        await client.send([body])
        await _wait(client, [body["request_id"]], timeout_s=60)
        first = client.first_results([body["request_id"]])[body["request_id"]]
        sent = client.sent_at[body["request_id"]]
        latencies.append(first.arrived_at - sent)
        timings = first.result.timings
        stages.append(
            (
                timings.received_at.timestamp() - sent,
                (timings.completed_at - timings.received_at).total_seconds(),
                first.arrived_at - timings.completed_at.timestamp(),
            )
        )
    process = psutil.Process(cpu_of)
    before, machine_before = process.cpu_times(), psutil.cpu_times()
    throughput = await _backlog(client, make_requests("tput", requests, video=video))
    after, machine_after = process.cpu_times(), psutil.cpu_times()
    cpu_s = (after.user + after.system) - (before.user + before.system)
    machine_s = _busy_s(machine_after) - _busy_s(machine_before)
    return {
        "throughput_per_s": round(throughput, 2),
        # CPU time per request in the throughput phase, and the share of one core it kept busy.
        "cpu_ms_per_request": round(1000 * cpu_s / requests, 1),
        "cpu_percent_of_one_core": round(100 * cpu_s * throughput / requests, 1),
        # Every process on the machine (worker, broker, S3 server, this client): what the cores had to give.
        "machine_cpu_ms_per_request": round(1000 * machine_s / requests, 1),
        "machine_cpu_percent": round(100 * machine_s * throughput / requests / (psutil.cpu_count() or 1), 1),
        "latency_ms": stats.summary(latencies, scale=1000, digits=1),
        # Split by the result's own timings: produce -> worker received, received -> result built, -> seen.
        "latency_stages_p50_ms": {
            name: round(stats.percentile([stage[index] for stage in stages], 50) * 1000, 1)
            for index, name in enumerate(("pickup", "processing", "delivery"))
        },
    }


async def _backlog(client: Client, bodies: list[dict[str, Any]]) -> float:
    """Produce all at once; requests per second from the first send to the last result."""
    ids = [body["request_id"] for body in bodies]
    await client.send(bodies)
    await _wait(client, ids, timeout_s=60 + len(ids))
    first_sent = min(client.sent_at[request_id] for request_id in ids)
    last_seen = max(arrival.arrived_at for arrival in client.first_results(ids).values())
    return len(ids) / (last_seen - first_sent)


async def _wait(client: Client, ids: list[str], *, timeout_s: float) -> None:
    if not await client.wait_for(ids, timeout_s=timeout_s):
        raise TimeoutError(f"{len(set(ids) - client.answered())} of {len(ids)} requests unanswered")


@contextlib.asynccontextmanager
async def _floor(
    settings: Settings, *, template: VideoResult, sizes: tuple[int, int], fetch_wait_ms: int
) -> AsyncIterator[None]:
    """The minimal request -> S3 PUT -> result loop, running until the block ends."""
    consumer = AIOKafkaConsumer(
        **client_options(settings), auto_offset_reset="earliest", fetch_max_wait_ms=fetch_wait_ms
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=False, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        partitions = await partitions_of(consumer, settings.requests_topic)
        consumer.assign([TopicPartition(settings.requests_topic, p) for p in partitions])
        async with open_s3_client(settings) as s3:
            await s3.create_bucket(Bucket=settings.s3_bucket)
            loop = asyncio.create_task(
                _floor_loop(consumer, producer=producer, s3=s3, settings=settings, template=template, sizes=sizes)
            )
            try:
                yield
            finally:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
    finally:
        await producer.stop()
        await consumer.stop()


async def _floor_loop(
    consumer: AIOKafkaConsumer,
    *,
    producer: AIOKafkaProducer,
    s3: Any,
    settings: Settings,
    template: VideoResult,
    sizes: tuple[int, int],
) -> None:
    poster, video = (os.urandom(size) for size in sizes)
    result_json = template.model_dump_json()
    slots = asyncio.Semaphore(INFLIGHT)
    jobs: set[asyncio.Task[None]] = set()

    async def handle(key: bytes) -> None:
        try:
            request_id = key.decode()
            await s3.put_object(Bucket=settings.s3_bucket, Key=f"floor/{request_id}.jpg", Body=poster)
            await s3.put_object(Bucket=settings.s3_bucket, Key=f"floor/{request_id}.mp4", Body=video)
            value = result_json.replace(template.request_id, request_id).encode()
            await producer.send_and_wait(settings.results_topic, value=value, key=key)
        finally:
            slots.release()

    try:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for record in records:
                    await slots.acquire()
                    job = asyncio.create_task(handle(record.key))
                    jobs.add(job)
                    job.add_done_callback(jobs.discard)
    finally:
        for job in list(jobs):
            job.cancel()


async def _object_size(settings: Settings, result: VideoResult) -> int:
    """Size of the worker's poster of this result, for the floor's second object."""
    if result.video is None:
        raise RuntimeError(f"result {result.request_id} has no video")
    key = result.video.poster_uri.removeprefix(f"s3://{settings.s3_bucket}/")
    async with open_s3_client(settings) as s3:
        head = await s3.head_object(Bucket=settings.s3_bucket, Key=key)
    return int(head["ContentLength"])


def _busy_s(times: Any) -> float:
    return float(times.user + times.nice + times.system + times.irq + times.softirq)


def _ratio(value: float, floor: float) -> float | None:
    return round(value / floor, 3) if floor else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="backlog size of the throughput phase")
    parser.add_argument("--latency-samples", type=int, default=60, help="requests sent one at a time")
    args = parser.parse_args(argv)

    async def run() -> dict[str, Any]:
        with embedded_infra() as infra:
            return await measure(infra, requests=args.requests, latency_samples=args.latency_samples)

    started = time.monotonic()
    report = asyncio.run(run())
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
