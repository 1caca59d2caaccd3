"""Benchmark: the job API (`vidgen api` in its own process) against the embedded broker and S3 server.

- POST /v1/videos (JSON, an API key) from 50 concurrent clients: p50/p99 latency and requests/s, next to the floor
  in the same run: 50 concurrent bare produces of the same record (acks=all) from this process, which is the one
  thing a submission must wait for;
- GET /v1/videos/{id} of those jobs from 50 concurrent clients: p50/p99 and requests/s;
- the API process's CPU time per POST and per GET (user + system, over each phase): its cost, much less
  sensitive than latency to what else the machine runs;
- view freshness: a result published straight to the results topic -> the first GET that shows it, p50/p99
  (GETs every 2 ms; the view fetches with a 100 ms wait, which on tansu is when a fetch is answered).

    python -m bench.api [--posts 1000] [--gets 3000] [--concurrency 50] [--freshness 50] [--checkout DIR]

`--checkout` runs the API of another checkout (a worktree of an older commit; this interpreter, its code) against
the same clients, for the figures before a change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiokafka import AIOKafkaProducer

from bench import stats
from bench.infra import REPO_ROOT, Infra, embedded_infra, end_group, machine_info, new_run, spawn_api
from consumer.api.api_settings import ApiSettings
from consumer.api.auth.api_keys import create_key
from consumer.dev.embedded import free_port
from consumer.kafka.clients import client_options, ensure_topics, worker_topics
from consumer.settings import Settings
from schemas.events import VideoRequest, VideoResult

__all__ = ["main", "measure", "unthrottled_api"]

_BODY = {"prompt": "a red sneaker on a white table", "width": 256, "height": 256, "num_frames": 5}
_WARMUP = 50


@contextlib.asynccontextmanager
async def unthrottled_api(
    infra: Infra, settings: Settings, tmp: Path, *, checkout: Path = REPO_ROOT
) -> AsyncIterator[tuple[str, str, int]]:
    """`python -m consumer api` of `checkout` for the run, its rate and queue limits out of the way; yields its URL,
    an API key and its process id."""
    api = ApiSettings(
        host="127.0.0.1",
        port=free_port(),
        operator_port=free_port(),
        state_path=str(tmp / "view.sqlite3"),
        id_key="bench-" + uuid.uuid4().hex * 2,
        keys_file=str(tmp / "keys"),
        rate_per_s=1e6,
        burst=1_000_000,
        max_queued=1_000_000,
        tenant_max_queued=1_000_000,  # one tenant sends every job here: no fair share to keep
        max_wait_s=1e9,
        tenant_max_wait_s=1e9,
    )
    key = create_key(Path(str(api.keys_file)), "bench-shop")
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
    env |= settings.model_copy(update={"log_level": "WARNING"}).as_environment() | api.as_environment()
    process = await asyncio.to_thread(spawn_api, env, infra.log_dir / "api.log", checkout=checkout)
    url = f"http://127.0.0.1:{api.port}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(120):
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the API exited: {(infra.log_dir / 'api.log').read_text()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{api.operator_port}/readyz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
        yield url, key, process.pid
    finally:
        end_group(process, grace_s=10)


class _CpuClock:
    """CPU seconds (user + system) a process has used, lap by lap."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._last = self._used()

    def _used(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def lap_ms(self, calls: int) -> float:
        """Milliseconds of CPU since the last lap, per call."""
        now = self._used()
        spent, self._last = now - self._last, now
        return round(spent * 1000 / calls, 3)


async def _concurrently(count: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> dict[str, Any]:
    """`count` calls from `concurrency` clients: latency summary (ms) and calls per second."""
    latencies: list[float] = []
    queue = iter(range(count))

    async def client() -> None:
        for index in queue:
            started = time.perf_counter()
            await call(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"count": count, "per_s": round(count / elapsed, 1), "latency_ms": stats.summary(latencies, scale=1000)}


async def measure(
    infra: Infra, *, posts: int, gets: int, concurrency: int, freshness: int, checkout: Path = REPO_ROOT
) -> dict[str, Any]:
    settings = new_run(infra, "api").model_copy(update={"progress_events": True})
    floor_topic = settings.requests_topic + ".floor"
    await ensure_topics(settings, [*worker_topics(settings), floor_topic])
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=False, linger_ms=0)
    await producer.start()
    record = VideoRequest.model_validate({**_BODY, "request_id": "vid-" + "0" * 32, "tenant_id": "bench-shop"})
    value = record.model_dump_json(exclude_none=True).encode()

    async def produce(index: int) -> None:
        await producer.send_and_wait(floor_topic, key=f"floor-{index}".encode(), value=value)

    try:
        await _concurrently(_WARMUP, concurrency, produce)
        floor = await _concurrently(posts, concurrency, produce)
        with tempfile.TemporaryDirectory(prefix="vidgen-api-bench-") as tmp:
            async with unthrottled_api(infra, settings, Path(tmp), checkout=checkout) as (url, key, pid):
                api = await _against_api(
                    pid=pid,
                    url=url,
                    key=key,
                    settings=settings,
                    producer=producer,
                    posts=posts,
                    gets=gets,
                    concurrency=concurrency,
                    freshness=freshness,
                )
    finally:
        await producer.stop()
    post = api["post"]
    return {
        "machine": machine_info(),
        "checkout": str(checkout),
        "concurrency": concurrency,
        "produce_floor": floor,
        **api,
        "post_vs_floor": {
            "p50": round(post["latency_ms"]["p50"] / floor["latency_ms"]["p50"], 2),
            "p99": round(post["latency_ms"]["p99"] / floor["latency_ms"]["p99"], 2),
            "throughput": round(post["per_s"] / floor["per_s"], 2),
        },
    }


async def _against_api(
    *,
    pid: int,
    url: str,
    key: str,
    settings: Settings,
    producer: AIOKafkaProducer,
    posts: int,
    gets: int,
    concurrency: int,
    freshness: int,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    ids: list[str] = []
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:

        async def post(_: int) -> None:
            async with http.post(f"{url}/v1/videos", json=_BODY) as response:
                if response.status != 202:
                    raise RuntimeError(f"POST answered {response.status}: {await response.text()}")
                ids.append((await response.json())["id"])

        async def get(index: int) -> None:
            async with http.get(f"{url}/v1/videos/{ids[index % len(ids)]}") as response:
                if response.status != 200:
                    raise RuntimeError(f"GET answered {response.status}")
                await response.read()

        await _concurrently(_WARMUP, concurrency, post)
        cpu = _CpuClock(pid)
        submitted = await _concurrently(posts, concurrency, post)
        submitted["api_cpu_ms_each"] = cpu.lap_ms(posts)
        await _concurrently(_WARMUP, concurrency, get)
        cpu.lap_ms(1)
        read = await _concurrently(gets, concurrency, get)
        read["api_cpu_ms_each"] = cpu.lap_ms(gets)
        delays = [await _freshness(http, url, settings, producer, job_id) for job_id in ids[:freshness]]
    return {"post": submitted, "get": read, "view_freshness_ms": stats.summary(delays, scale=1000)}


async def _freshness(
    http: aiohttp.ClientSession, url: str, settings: Settings, producer: AIOKafkaProducer, job_id: str
) -> float:
    now = datetime.now(UTC)
    result = VideoResult.model_validate(
        {
            "request_id": job_id,
            "tenant_id": "bench-shop",
            "status": "failed",
            "error": {"code": "render_failed", "message": "bench", "retryable": False},
            "timings": {"received_at": now, "completed_at": now},
            "worker_id": "bench",
            "model": "standin",
        }
    )
    started = time.perf_counter()
    await producer.send_and_wait(settings.results_topic, key=job_id.encode(), value=result.model_dump_json().encode())
    while True:
        async with http.get(f"{url}/v1/videos/{job_id}") as response:
            if (await response.json())["status"] == "failed":
                return time.perf_counter() - started
        await asyncio.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--gets", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--freshness", type=int, default=50)
    parser.add_argument("--checkout", type=Path, default=REPO_ROOT, help="the checkout whose API to run")
    args = parser.parse_args(argv)
    with embedded_infra() as infra:
        report = asyncio.run(
            measure(
                infra,
                posts=args.posts,
                gets=args.gets,
                concurrency=args.concurrency,
                freshness=args.freshness,
                checkout=args.checkout.resolve(),
            )
        )
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
