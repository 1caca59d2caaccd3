"""The API as it is deployed: `python -m consumer api` processes beside a real worker. Two replicas answer for
each other's jobs; a replica killed mid-job resumes from the offsets it stored; `vidgen api-key create`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from consumer.api.view.job_state import TERMINAL
from consumer.dev.embedded import free_port
from consumer.settings import Settings
from tests.integration.api_helpers import (
    ApiProcess,
    IdentityProvider,
    api_settings,
    bearer,
    new_key,
    process_env,
    sse_messages,
)
from tests.support import SMALL

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]


def _replica(settings: Settings, tmp_path: Path, identity: IdentityProvider, name: str, **overrides: Any) -> ApiProcess:
    api = api_settings(
        tmp_path,
        identity.url,
        state_path=str(tmp_path / f"{name}.sqlite3"),
        port=free_port(),
        operator_port=free_port(),
        **overrides,
    )
    return ApiProcess(process_env(settings, api), tmp_path / f"{name}.log", api.port, api.operator_port)


async def _until_job(
    http: aiohttp.ClientSession, url: str, *, status: str | frozenset[str] | None = None, timeout_s: float = 60
) -> Any:
    """Until GET answers the job (in `status`, when given): another process's view has no notification to
    wait on, so the test polls the public API like a client would."""
    wanted = {status} if isinstance(status, str) else status
    async with asyncio.timeout(timeout_s):
        while True:
            async with http.get(url) as response:
                if response.status == 200:
                    job = await response.json()
                    if wanted is None or job["status"] in wanted:
                        return job
            await asyncio.sleep(0.1)


async def _until_gone(http: aiohttp.ClientSession, url: str, *, timeout_s: float = 60) -> None:
    """Until GET answers 404 (polled, as `_until_job`)."""
    async with asyncio.timeout(timeout_s):
        while True:
            async with http.get(url) as response:
                if response.status == 404:
                    return
            await asyncio.sleep(0.1)


async def _metric(url: str, name: str, labels: str = "") -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + labels))


async def test_submit_through_one_replica_read_cancel_and_delete_through_the_other(
    settings: Settings,
    start_worker: Callable[..., Any],
    tmp_path: Path,
    identity: IdentityProvider,
    api_processes: list[ApiProcess],
) -> None:
    first, second = (_replica(settings, tmp_path, identity, name) for name in ("a", "b"))
    api_processes += [first, second]
    key = new_key(api_settings(tmp_path, identity.url), "shop-1")
    for replica in api_processes:
        replica.start()
    await asyncio.gather(first.ready(), second.ready())
    async with aiohttp.ClientSession(headers=bearer(key)) as http:
        jobs = []
        for prompt in ("a red sneaker", "a blue sneaker", "a green sneaker"):
            async with http.post(f"{first.url}/v1/videos", json={"prompt": prompt, **SMALL}) as response:
                assert response.status == 202, await response.text()
                jobs.append(await response.json())
        kept, cancelled, deleted = (job["id"] for job in jobs)
        assert (await _until_job(http, f"{second.url}/v1/videos/{kept}"))["status"] == "queued"
        await _until_job(http, f"{second.url}/v1/videos/{cancelled}")
        async with http.post(f"{second.url}/v1/videos/{cancelled}/cancel") as response:
            assert response.status == 202
        await _until_job(http, f"{first.url}/v1/videos/{cancelled}")  # the cancel is in both views' topics
        await _until_job(http, f"{second.url}/v1/videos/{deleted}")
        async with http.delete(f"{second.url}/v1/videos/{deleted}") as response:
            assert response.status == 200
        await _until_gone(http, f"{first.url}/v1/videos/{deleted}")  # the other replica forgets it too

        await start_worker(settings)
        async with http.get(f"{second.url}/v1/videos/{kept}/events") as response:
            messages = sse_messages(await asyncio.wait_for(response.text(), 120))
        assert json.loads(messages[-1]["data"])["status"] == "completed"
        done = await _until_job(http, f"{first.url}/v1/videos/{kept}", status="completed")
        assert done["video"]["url"].startswith("http")
        # Both views see the job end; that it ends `cancelled` is the worker's part (test_api_jobs.py).
        ended = await _until_job(http, f"{first.url}/v1/videos/{cancelled}", status=TERMINAL, timeout_s=120)
        assert (await _until_job(http, f"{second.url}/v1/videos/{cancelled}", status=TERMINAL))["status"] == ended[
            "status"
        ]
    for replica in api_processes:
        assert replica.stop() == 0, replica.log_tail()  # SIGTERM: a clean stop


async def test_a_replica_killed_mid_job_resumes_from_its_stored_offsets(
    settings: Settings,
    start_worker: Callable[..., Any],
    tmp_path: Path,
    identity: IdentityProvider,
    api_processes: list[ApiProcess],
) -> None:
    replica = _replica(settings, tmp_path, identity, "restarted")
    api_processes.append(replica)
    key = new_key(api_settings(tmp_path, identity.url), "shop-1")
    replica.start()
    await replica.ready()
    async with aiohttp.ClientSession(headers=bearer(key)) as http:
        await start_worker(settings)
        body = {"prompt": "a slow green teapot", **SMALL, "num_inference_steps": 40}
        async with http.post(f"{replica.url}/v1/videos", json=body) as response:
            job = await response.json()
        url = f"{replica.url}/v1/videos/{job['id']}"
        await _until_job(http, url, status="in_progress", timeout_s=90)
        async with asyncio.timeout(30):
            # Another process's metric: polling is the only way to watch it.
            while not await _metric(replica.operator_url, "vidgen_api_view_records_total", '{topic="requests"}'):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        replica.stop(kill=True)  # SIGKILL mid-job: nothing flushed on the way out

        restarted = ApiProcess(replica.env, replica.log_path, replica.port, replica.operator_port)
        api_processes.append(restarted)
        restarted.start()
        await restarted.ready()
        async with http.get(f"{url}/events", headers={"Last-Event-ID": "1"}) as response:
            messages = sse_messages(await asyncio.wait_for(response.text(), 120))
        assert json.loads(messages[-1]["data"])["status"] == "completed"
        assert all(int(message["id"]) > 1 for message in messages)  # only what changed after version 1
        # Resumed where its rows ended: the request record was not read again.
        assert await _metric(restarted.operator_url, "vidgen_api_view_records_total", '{topic="requests"}') == 0
    assert restarted.stop() == 0


def test_api_key_create_prints_the_key_alone_on_the_last_line_and_stores_its_hash(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "api-key", "create", "--tenant", "shop-9", "--keys-file", str(keys)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = done.stdout.rstrip("\n").splitlines()[-1]
    assert key.startswith("vgk_") and key not in keys.read_text() and keys.read_text().endswith(" shop-9\n")


def test_vidgen_api_without_its_id_key_exits_2_naming_the_setting(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "VIDGEN_API_KEYS_FILE": str(tmp_path / "keys")}
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "api"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert done.returncode == 2 and "id_key" in done.stderr
