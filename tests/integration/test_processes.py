"""Worker processes as an orchestrator runs them: SIGTERM drains, kill -9 loses nothing with a second worker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from consumer.dev.embedded import free_port
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import KafkaClient, metric, request_body, until


def _env(settings: Settings, **overrides: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")}
    return env | settings.model_copy(update=overrides).as_environment()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, name: str, **overrides: object) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        env = _env(settings, http_port=port, worker_id=name, model="standin", log_format="text", **overrides)
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env, stdout=log, stderr=log)
        processes.append(process)
        return process, port

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


# A worker process imports torch and diffusers (about 7 s of CPU) before it listens: over a minute when the two cores
# are shared with other test processes.
STARTUP_S = 120


async def _ready(port: int) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


@pytest.mark.timeout(240)
async def test_sigterm_without_checkpoints_lets_the_render_finish_publishes_commits_and_exits_zero(
    settings: Settings, kafka: KafkaClient, spawn
) -> None:
    # With checkpoints (the default) the render is handed back instead: tests/integration/test_checkpoints.py.
    worker, port = spawn(settings, "drained", standin_render_s=4, checkpoints=False)
    await until(lambda: _ready(port), timeout_s=STARTUP_S)
    await kafka.send(request_body("drain-1"))
    await until(lambda: kafka.denoising("drain-1"))
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 30) == 0
    results = await kafka.results(1)
    assert results["drain-1"].status == "completed" and results["drain-1"].worker_id == "drained"
    assert await kafka.wait_committed(1) == 1


@pytest.mark.timeout(360)
async def test_kill_minus_nine_mid_render_loses_nothing(settings: Settings, kafka: KafkaClient, spawn) -> None:
    first, first_port = spawn(settings, "victim", standin_render_s=2)
    await until(lambda: _ready(first_port), timeout_s=STARTUP_S)
    second, second_port = spawn(settings, "survivor", standin_render_s=2)
    await until(lambda: _ready(second_port), timeout_s=STARTUP_S)
    sent = [f"kill-{index}" for index in range(8)]
    for request_id in sent:
        await kafka.send(request_body(request_id, prompt=f"shoe {request_id}"))
    await until(lambda: metric(first_port, "vidgen_inflight_jobs"), timeout_s=30)
    first.kill()  # SIGKILL mid-render: nothing published, nothing committed for its in-flight work
    first.wait()

    by_id: dict[str, set[tuple[str, str | None]]] = {}
    count = len(sent)
    while set(by_id) != set(sent) and count < 2 * len(sent):  # duplicates may take some of the first reads
        by_id.clear()
        for record in await kafka.read(settings.results_topic, count, timeout_s=120):
            result = VideoResult.model_validate_json(record.value)
            by_id.setdefault(result.request_id, set()).add((result.status, result.video and result.video.uri))
        count += 1
    assert set(by_id) == set(sent)  # none lost
    assert all(len(outcomes) == 1 for outcomes in by_id.values())  # duplicates, if any, are identical
    assert {status for outcomes in by_id.values() for status, _ in outcomes} == {"completed"}
    assert await kafka.wait_committed(len(sent), timeout_s=60) == len(sent)
    second.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(second.wait, 30) == 0
