"""`vidgen run --gpus N` on a node without GPUs: a supervisor process with two CPU workers against the real broker
and S3 server. A child killed with SIGKILL is restarted and its partitions' work completes; SIGTERM drains every
child and the supervisor exits 0; a child that can never start stops the node with a clear message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consumer.dev.embedded import free_port
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import KafkaClient, http_get, request_body, until

pytestmark = pytest.mark.integration


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    async def readyz(self) -> dict[str, Any]:
        _, text = await http_get(self.port, "/readyz")
        body: dict[str, Any] = json.loads(text)
        return body

    async def metric(self, name: str, worker: int) -> float:
        _, text = await http_get(self.port, "/metrics")
        match = re.search(rf'^{name}\{{[^}}]*worker="{worker}"[^}}]*\}} ([0-9.e+-]+)$', text, flags=re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(settings: Settings, gpus: str = "2", *, startup_attempts: int = 3) -> Node:
        port = free_port()
        node = settings.model_copy(
            update={
                "http_port": port,
                "device": "cpu",
                "log_format": "text",
                "supervisor_restart_backoff_s": 0.2,
                "supervisor_startup_attempts": startup_attempts,
            }
        )
        env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
        env |= node.as_environment() | {"HF_HUB_OFFLINE": "1"}
        log_path = tmp_path / "node.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run", "--gpus", gpus],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cleanup reaches the children too
            )
        started.append(process)
        return Node(process, port, log_path)

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def _results(kafka: KafkaClient, sent: list[str]) -> dict[str, set[tuple[str, str | None]]]:
    """Every sent request's outcomes (duplicates after a kill may take some of the first reads)."""
    by_id: dict[str, set[tuple[str, str | None]]] = {}
    count = len(sent)
    while set(sent) - set(by_id) and count < 2 * len(sent):
        by_id.clear()
        for record in await kafka.read(kafka.settings.results_topic, count, timeout_s=120):
            result = VideoResult.model_validate_json(record.value)
            by_id.setdefault(result.request_id, set()).add((result.status, result.video and result.video.uri))
        count += 1
    return by_id


@pytest.mark.timeout(300)
async def test_two_cpu_workers_one_killed_and_restarted_then_all_drained_by_sigterm(
    settings: Settings, kafka: KafkaClient, start_node: Callable[..., Node]
) -> None:
    # Without checkpoints a SIGTERM lets renders finish (with them, the default, they are handed back:
    # tests/integration/test_checkpoints.py), within a grace generous for a loaded machine.
    standin = {"model": "standin", "standin_render_s": 1.0, "checkpoints": False, "shutdown_grace_s": 60}
    node = start_node(settings.model_copy(update=standin))

    async def both_ready() -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            body = await node.readyz()
            return body if body["ready_workers"] == 2 else None
        return None

    body = await until(both_ready, timeout_s=120)
    workers = body["workers"]
    assert {slot: w["state"] for slot, w in workers.items()} == {"0": "ready", "1": "ready"}
    assert {w["worker_id"] for w in workers.values()} == {f"{settings.worker_id}-0", f"{settings.worker_id}-1"}
    assert workers["0"]["http_port"] != workers["1"]["http_port"]
    assert all(w["checks"]["consumer_group"] == "ok" for w in workers.values())

    sent = [f"sup-{index}" for index in range(8)]
    for request_id in sent:
        await kafka.send(request_body(request_id, prompt=f"shoe {request_id}"))
    await until(lambda: node.metric("vidgen_inflight_jobs", worker=0), timeout_s=60)  # merged from child 0
    victim = workers["0"]["pid"]
    os.kill(victim, signal.SIGKILL)  # mid-render: nothing of its in-flight work was published or committed

    async def restarted() -> dict[str, Any] | None:
        worker = (await node.readyz())["workers"]["0"]
        return worker if worker["restarts"] == 1 and worker["state"] == "ready" else None

    again = await until(restarted, timeout_s=120)
    assert again["pid"] != victim and _gone(victim)
    assert "worker 0 (CPU)" in node.log() and "killed by SIGKILL" in node.log()

    by_id = await _results(kafka, sent)
    assert set(by_id) == set(sent)  # none lost
    assert all(len(outcomes) == 1 for outcomes in by_id.values())  # duplicates, if any, are identical
    assert {status for outcomes in by_id.values() for status, _ in outcomes} == {"completed"}
    assert await kafka.wait_committed(len(sent), timeout_s=60) == len(sent)

    # SIGTERM mid-render: the render finishes, is published and committed, every child exits 0, then the node.
    await kafka.send(request_body("sup-drain"))
    await until(lambda: kafka.denoising("sup-drain"), timeout_s=60)
    children = [w["pid"] for w in (await node.readyz())["workers"].values()]
    node.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(node.process.wait, 90) == 0, node.log()[-3000:]
    assert all(_gone(pid) for pid in children)
    assert (await kafka.results(len(sent) + 1))["sup-drain"].status == "completed"
    assert await kafka.wait_committed(len(sent) + 1) == len(sent) + 1
    assert "every worker drained and exited 0" in node.log()


@pytest.mark.timeout(300)
async def test_a_worker_that_never_starts_stops_the_node_with_a_clear_message(
    settings: Settings, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    no_model = tmp_path / "no-model"  # a folder without model_index.json: every start fails loading it
    no_model.mkdir()
    node = start_node(settings.model_copy(update={"model": str(no_model)}), "1", startup_attempts=2)
    status = await asyncio.to_thread(node.process.wait, 240)
    log = node.log()
    assert status == 1, log[-3000:]
    assert "worker 0 (CPU) died at start-up 2 times in a row without ever becoming ready" in log, log
    assert "Stopping every worker of the node" in log and "exiting 1: a worker never managed to start" in log
    with pytest.raises(ProcessLookupError):  # no child left behind in the node's process group
        os.killpg(node.process.pid, 0)


@pytest.mark.timeout(150)
async def test_sigterm_while_the_workers_still_start_exits_zero(
    settings: Settings, start_node: Callable[..., Node]
) -> None:
    node = start_node(settings.model_copy(update={"model": "standin"}))

    async def started() -> bool:
        with contextlib.suppress(OSError, ValueError):
            workers = (await node.readyz())["workers"].values()
            return all(w["state"] == "starting" and w["pid"] for w in workers)
        return False

    await until(started, timeout_s=60)
    node.process.send_signal(signal.SIGTERM)  # before any of them holds work: stopped at once, not a failure
    assert await asyncio.to_thread(node.process.wait, 90) == 0, node.log()[-3000:]
    assert "every worker drained and exited 0" in node.log()
