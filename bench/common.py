"""What every benchmark needs: an embedded broker and S3 server, fresh topics per run, worker subprocesses
(`python -m consumer run`) that are always cleaned up, a producer and a result collector, and psutil readings."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.embedded import free_port, kafka_broker, wait_for_port
from consumer.kafka import client_options, ensure_topics, worker_topics
from consumer.settings import Settings
from schemas.events import VideoResult

__all__ = [
    "REPO_ROOT",
    "SMALL",
    "VIDEO_512",
    "Arrival",
    "Client",
    "Infra",
    "WorkerProcess",
    "embedded_infra",
    "machine_info",
    "make_requests",
    "new_run",
    "partitions_of",
    "render_intervals",
    "running_workers",
    "settle_group",
    "start_workers",
    "stop_workers",
    "worker_env",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SMALL = {"width": 256, "height": 256, "num_frames": 5}
VIDEO_512 = {"width": 512, "height": 512, "num_frames": 25}
COLLECTOR_FETCH_WAIT_MS = 10
_STEPS = 8  # the stand-in spreads its hold over the steps; the count only sets the progress granularity


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    s3_endpoint: str
    log_dir: Path


@contextlib.contextmanager
def embedded_infra() -> Iterator[Infra]:
    """A tansu broker and a moto S3 server, each in its own process on a loopback port (moto in a separate
    process so its request handling does not share the benchmark's GIL)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # moto accepts any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory(prefix="vidgen-bench-") as tmp:
        log_dir = Path(tmp)
        with kafka_broker(log_path=log_dir / "tansu.log") as bootstrap, _moto_process(log_dir) as endpoint:
            yield Infra(bootstrap=bootstrap, s3_endpoint=endpoint, log_dir=log_dir)


@contextlib.contextmanager
def _moto_process(log_dir: Path) -> Iterator[str]:
    port = free_port()
    with open(log_dir / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, timeout_s=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            _end_group(process, grace_s=5)


def new_run(infra: Infra, label: str) -> Settings:
    """Settings naming fresh topics, group and bucket, so runs on one broker never see each other."""
    run = f"{label}-{uuid.uuid4().hex[:6]}"
    return Settings(
        kafka_bootstrap_servers=infra.bootstrap,
        kafka_enable_idempotence=False,
        s3_endpoint_url=infra.s3_endpoint,
        s3_bucket=f"bench-{run}".lower(),
        s3_create_bucket=True,
        requests_topic=f"{run}.requests",
        results_topic=f"{run}.results",
        dlq_topic=f"{run}.dlq",
        retry_topic=f"{run}.retry",
        progress_topic=f"{run}.progress",
        consumer_group=f"{run}.group",
        topic_partitions=8,
        worker_id=f"bench-client-{run}",
    )


def worker_env(
    settings: Settings,
    *,
    worker_id: str,
    http_port: int,
    render_s: float,
    max_inflight: int = 2,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one worker subprocess: the run's topics and bucket, the stand-in model."""
    worker = settings.model_copy(
        update={
            "kafka_enable_idempotence": False,  # tansu has no idempotent producer
            "s3_create_bucket": True,
            "model": "standin",
            "standin_render_s": render_s,
            "http_host": "127.0.0.1",
            "http_port": http_port,
            "worker_id": worker_id,
            "log_level": "WARNING",
            "max_inflight_jobs": max_inflight,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
            "shutdown_grace_s": 10,
        }
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(worker.as_environment())
    env.setdefault("AWS_ACCESS_KEY_ID", "bench")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    env.update(extra or {})
    return env


class WorkerProcess:
    """One `python -m consumer run` in its own process group (so a kill takes everything it started)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.worker_id = env["VIDGEN_WORKER_ID"]
        self.http_port = int(env["VIDGEN_HTTP_PORT"])
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run"],
                env=self.env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("worker not started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_ready(self, *, timeout_s: float = 180.0) -> None:
        """Until GET /readyz answers 200 (model warm, in the group, S3 reachable)."""
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"worker {self.worker_id} exited before ready:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            self.ready_at = time.monotonic()
                            return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"worker {self.worker_id} not ready after {timeout_s}s:\n{self.log_tail()}")

    async def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples from GET /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, session.get(url) as r:
            text = await r.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{")
        )

    def rss_mb(self) -> float:
        return round(psutil.Process(self.pid).memory_info().rss / 2**20, 1)

    def open_fds(self) -> int:
        return psutil.Process(self.pid).num_fds()

    def kill(self) -> None:
        """kill -9 of the whole process group, as an OOM killer or a lost node would."""
        if self.process is not None:
            _end_group(self.process, grace_s=0)

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM (the worker drains), SIGKILL after `grace_s`."""
        if self.process is not None:
            _end_group(self.process, grace_s=grace_s)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _end_group(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s if grace_s > 0 else 10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group may outlive its leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


async def start_workers(
    infra: Infra,
    settings: Settings,
    count: int,
    *,
    render_s: float,
    max_inflight: int = 2,
    extra: dict[str, str] | None = None,
    wait: bool = True,
) -> list[WorkerProcess]:
    """Start `count` workers at once (and wait until each is ready). On any failure every one is stopped."""
    workers = [
        WorkerProcess(
            worker_env(
                settings,
                worker_id=f"w{index}",
                http_port=free_port(),
                render_s=render_s,
                max_inflight=max_inflight,
                extra=extra,
            ),
            infra.log_dir / f"{settings.consumer_group}-w{index}.log",
        )
        for index in range(count)
    ]
    try:
        for worker in workers:
            worker.start()
        if wait:
            await asyncio.gather(*(worker.wait_ready() for worker in workers))
    except BaseException:
        stop_workers(workers, grace_s=0)
        raise
    return workers


def stop_workers(workers: Iterable[WorkerProcess], *, grace_s: float = 15.0) -> None:
    for worker in workers:
        worker.stop(grace_s=grace_s)


@contextlib.asynccontextmanager
async def running_workers(
    infra: Infra, settings: Settings, count: int, **options: Any
) -> AsyncIterator[list[WorkerProcess]]:
    workers = await start_workers(infra, settings, count, **options)
    try:
        yield workers
    finally:
        stop_workers(workers, grace_s=0)  # results are in; a drain would only cost time


async def settle_group(workers: Sequence[WorkerProcess], *, quiet_s: float = 2.0, timeout_s: float = 60.0) -> None:
    """Until no worker's rebalance count has changed for `quiet_s`: late joiners have been given partitions."""
    deadline = time.monotonic() + timeout_s
    last: list[float] = []
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        counts = [await worker.metric("vidgen_rebalances_total") for worker in workers]
        if counts != last:
            last, quiet_since = counts, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s and all(counts):
            return
        await asyncio.sleep(0.25)
    raise TimeoutError(f"consumer group did not settle within {timeout_s}s")


def make_requests(
    label: str, count: int, *, video: dict[str, int], steps: int = _STEPS, first: int = 0
) -> list[dict[str, Any]]:
    """Distinct requests (own prompt and seed each), so none is a cache hit of another."""
    tag = uuid.uuid4().hex[:6]
    return [
        {
            "request_id": f"{label}-{tag}-{index:06d}",
            "tenant_id": "bench",
            "prompt": f"benchmark product video {tag} number {index}",
            "seed": index,
            "num_inference_steps": steps,
            "fps": 8,
            **video,
        }
        for index in range(first, first + count)
    ]


@dataclass(frozen=True)
class Arrival:
    request_id: str
    arrived_at: float  # time.time() when the collector saw it
    result: VideoResult


@dataclass
class Client:
    """Producer of requests and collector of results, as an upstream and a downstream service would be."""

    settings: Settings
    sent_at: dict[str, float] = field(default_factory=dict)
    arrivals: list[Arrival] = field(default_factory=list)
    _producer: AIOKafkaProducer | None = None
    _collector: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Client:
        await ensure_topics(self.settings, worker_topics(self.settings))
        self._producer = AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=False, linger_ms=0
        )
        await self._producer.start()
        # tansu answers a fetch only when its max wait runs out, even when records arrived meanwhile (Apache Kafka
        # answers at once): a short wait keeps that out of the measured latencies.
        consumer = AIOKafkaConsumer(
            **client_options(self.settings), auto_offset_reset="earliest", fetch_max_wait_ms=COLLECTOR_FETCH_WAIT_MS
        )
        await consumer.start()
        try:
            partitions = await partitions_of(consumer, self.settings.results_topic)
            consumer.assign([TopicPartition(self.settings.results_topic, p) for p in partitions])
        except BaseException:
            await consumer.stop()
            await self._producer.stop()
            raise
        self._collector = asyncio.create_task(self._collect(consumer))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
        if self._producer is not None:
            await self._producer.stop()

    async def _collect(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                now = time.time()
                for records in batch.values():
                    for record in records:
                        result = VideoResult.model_validate_json(record.value)
                        self.arrivals.append(Arrival(result.request_id, now, result))
                if batch:
                    self._changed.set()
        finally:
            await consumer.stop()

    async def send(self, bodies: Sequence[dict[str, Any]], *, round_robin: bool = False) -> None:
        """Produce all at once. With `round_robin`, request i goes to partition i % partitions (an even
        spread; key hashing would give some workers more than others)."""
        if self._producer is None:
            raise RuntimeError("client not started")
        partitions = self.settings.topic_partitions
        futures = []
        for index, body in enumerate(bodies):
            self.sent_at[body["request_id"]] = time.time()
            futures.append(
                await self._producer.send(
                    self.settings.requests_topic,
                    value=json.dumps(body).encode(),
                    key=body["request_id"].encode(),
                    partition=index % partitions if round_robin else None,
                )
            )
        await asyncio.gather(*futures)

    def answered(self) -> set[str]:
        return {arrival.request_id for arrival in self.arrivals}

    async def wait_for(self, request_ids: Iterable[str], *, timeout_s: float) -> bool:
        """True once every id has a result; False at the timeout."""
        wanted = set(request_ids)
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.answered():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True

    def first_results(self, request_ids: Iterable[str]) -> dict[str, Arrival]:
        """The first result of each id (later ones are duplicates)."""
        wanted = set(request_ids)
        first: dict[str, Arrival] = {}
        for arrival in self.arrivals:
            if arrival.request_id in wanted:
                first.setdefault(arrival.request_id, arrival)
        return first


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, *, timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await consumer.topics()
        if partitions := consumer.partitions_for_topic(topic):
            return set(partitions)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topic {topic} has no partitions after {timeout_s}s")


def render_intervals(arrivals: Iterable[Arrival]) -> dict[str, list[tuple[float, float]]]:
    """Per worker, the (start, end) epoch seconds of each render, from the results' timings."""
    per_worker: dict[str, list[tuple[float, float]]] = {}
    for arrival in arrivals:
        timings = arrival.result.timings
        if timings.render_started_at is None or timings.render_finished_at is None:
            continue
        per_worker.setdefault(arrival.result.worker_id, []).append(
            (timings.render_started_at.timestamp(), timings.render_finished_at.timestamp())
        )
    return per_worker


def machine_info() -> dict[str, Any]:
    import platform

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }
