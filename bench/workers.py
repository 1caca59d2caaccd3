"""Worker subprocesses (`python -m consumer run`), each in its own process group so they are always cleaned up:
their environment, start and stop, readiness and metrics, and waiting for the consumer group to settle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.infra import REPO_ROOT, Infra, end_group
from consumer.dev.embedded import free_port
from consumer.settings import Settings

__all__ = [
    "WorkerProcess",
    "running_workers",
    "settle_group",
    "start_workers",
    "stop_workers",
    "worker_env",
]


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
            end_group(self.process, grace_s=0)

    def stop(self, *, grace_s: float = 15.0) -> None:
        """SIGTERM (the worker drains), SIGKILL after `grace_s`."""
        if self.process is not None:
            end_group(self.process, grace_s=grace_s)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


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
