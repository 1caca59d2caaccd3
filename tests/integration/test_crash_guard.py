"""Worker processes that die: a request that kills every worker that starts it is answered `worker_crashed` after
`VIDGEN_MAX_WORKER_CRASHES` deaths while the pool (restarted by a supervisor loop, as an orchestrator would) goes on
with everything else; and a worker that cannot start says why in one line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from consumer.crash_guard.counts import StartCounts
from consumer.dev.embedded import free_port
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.controls_worker import POISON
from tests.support import REPO, KafkaClient, ready, request_body, until


class Pool:
    """Worker processes (`python -m tests.controls_worker`) in fixed slots; `supervise` restarts whichever dies."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.slots: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
        self.deaths: list[tuple[int, int]] = []  # (slot, exit code)
        self._started = 0

    def start(self, slot: int) -> None:
        self._started += 1
        port = free_port()
        worker = self.settings.model_copy(update={"http_port": port, "worker_id": f"w{slot}-{self._started}"})
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")} | worker.as_environment()
        with open(self.logs / f"w{slot}-{self._started}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.controls_worker"], cwd=REPO, env=env, stdout=log, stderr=log
            )
        self.slots[slot] = (process, port)

    async def supervise(self) -> None:
        """Forever: a worker that exited is recorded and started again."""
        while True:
            for slot, (process, _) in list(self.slots.items()):
                if process.poll() is not None:
                    self.deaths.append((slot, process.returncode))
                    self.start(slot)
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        for process, _ in self.slots.values():
            if process.poll() is None:
                process.kill()
                process.wait()


async def _answered(kafka: KafkaClient, request_ids: set[str]) -> dict[str, VideoResult] | None:
    """The first result of each request once every one has one (a request a dying worker had finished but not
    committed is answered twice, identically)."""
    records, _ = await kafka.read_to_end(kafka.settings.results_topic)
    first: dict[str, VideoResult] = {}
    for record in records:
        first.setdefault(record.key.decode(), VideoResult.model_validate_json(record.value))
    return first if request_ids <= first.keys() else None


async def _ready(port: int) -> bool:
    """A worker that is still starting has no HTTP server yet."""
    try:
        return await ready(port)
    except aiohttp.ClientError:
        return False


@pytest.fixture
def pool(settings: Settings, tmp_path: Path) -> Iterator[Pool]:
    worker = settings.model_copy(
        update={
            "model": "standin",
            "standin_render_s": 0.3,
            "max_worker_crashes": 2,
            "session_timeout_ms": 3_000,  # a dead member leaves the group this soon
            "heartbeat_interval_ms": 300,
            "rebalance_grace_s": 1.0,
            "log_format": "text",
        }
    )
    made = Pool(worker, tmp_path)
    yield made
    made.stop()


@pytest.mark.timeout(300)
async def test_a_request_that_kills_its_workers_ends_worker_crashed_while_the_pool_serves_the_rest(
    settings: Settings, kafka: KafkaClient, pool: Pool
) -> None:
    for slot in (0, 1):
        pool.start(slot)
    for slot in (0, 1):
        await until(lambda slot=slot: _ready(pool.slots[slot][1]), timeout_s=120)
    supervising = asyncio.create_task(pool.supervise())
    try:
        sent = [f"shoe-{index}" for index in range(12)]
        for request_id in sent[:6]:
            await kafka.send(request_body(request_id, prompt=f"a shoe, take {request_id}"))
        await kafka.send(request_body("poison", prompt=f"a {POISON} vase"))
        for request_id in sent[6:]:
            await kafka.send(request_body(request_id, prompt=f"a shoe, take {request_id}"))

        results = await until(lambda: _answered(kafka, {*sent, "poison"}), timeout_s=240, every_s=1.0)

        poisoned = results.pop("poison")
        assert poisoned.status == "failed" and poisoned.error is not None
        assert (poisoned.error.code, poisoned.error.retryable) == ("worker_crashed", False)
        assert "2 workers died" in poisoned.error.message
        assert {request_id: result.status for request_id, result in results.items()} == dict.fromkeys(sent, "completed")
        assert [code for _, code in pool.deaths] == [-signal.SIGKILL] * 2  # it took down exactly two workers
        for slot in (0, 1):  # and the pool is up
            process, port = pool.slots[slot]
            assert process.poll() is None
            await until(lambda port=port: _ready(port), timeout_s=60)
    finally:
        supervising.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervising

    [dead_letter] = await kafka.read(settings.dlq_topic, 1)
    headers = dict(dead_letter.headers)
    assert dead_letter.key == b"poison" and headers["vidgen-error-code"] == b"worker_crashed"
    assert headers["vidgen-original-topic"] == settings.requests_topic.encode()
    assert await kafka.wait_committed(13, timeout_s=60) == 13
    counts = StartCounts()
    records, _ = await kafka.read_to_end(settings.attempts_topic)
    for record in records:
        counts.apply(record.key, record.value)
    assert len(counts) == 0  # every start was withdrawn once its request was answered


@pytest.mark.timeout(180)
def test_a_worker_against_brokers_without_the_idempotent_producer_says_which_setting_fixes_it(
    settings: Settings, tmp_path: Path
) -> None:
    worker = settings.model_copy(
        update={"kafka_enable_idempotence": True, "model": "standin", "http_port": free_port(), "log_format": "text"}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")} | worker.as_environment()
    command = [sys.executable, "-m", "consumer", "run"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    lines = [line for line in output.splitlines() if "VIDGEN_KAFKA_ENABLE_IDEMPOTENCE=false" in line]
    assert len(lines) == 1, output
    assert "idempotent producer" in lines[0] and "InitProducerId" in lines[0]
    assert "Traceback" not in output
