"""`vidgen demo --api` as a person runs it: it starts everything, prints the console's URL and a key that works,
renders a video submitted through the API, and stops everything on Ctrl-C (SIGINT to its process group, as a
terminal sends it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration.api_helpers import bearer, wait_ready
from tests.support import REPO

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
async def test_demo_api_serves_the_console_and_a_worker_until_interrupted(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIDGEN_")}
    log = tmp_path / "demo.log"
    with log.open("wb") as stderr:
        demo = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer", "demo", "--api", "--port", "0",
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        assert demo.stdout is not None
        printed: dict[str, str] = {}
        async with asyncio.timeout(120):
            while "api key" not in printed:
                line = (await demo.stdout.readline()).decode()
                assert line, f"the demo ended early:\n{log.read_text()[-3000:]}"
                name, _, value = line.strip().partition(": ")
                printed[name] = value
        url, key = printed["console"].rstrip("/"), printed["api key"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and key.startswith("vgk_")
        await wait_ready(url)
        async with aiohttp.ClientSession(headers=bearer(key)) as http:
            async with http.get(f"{url}/") as response:
                assert response.status == 200 and response.content_type == "text/html"
            body = {"prompt": "a green kettle", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}
            async with http.post(f"{url}/v1/videos", json=body) as response:
                assert response.status == 202, await response.text()
                job = await response.json()
            async with http.get(f"{url}/v1/videos/{job['id']}/events") as response:
                last = [line async for line in response.content if line.startswith(b"data: ")][-1]
        assert json.loads(last[6:])["status"] == "completed"
        broker_port = int(re.findall(r"broker \(tansu\) on 127\.0\.0\.1:(\d+)", log.read_text())[0])
    finally:
        if demo.returncode is None:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in its terminal
    assert await asyncio.wait_for(demo.wait(), 60) == 0, log.read_text()[-3000:]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker_port), timeout=1):
        pass  # the embedded broker is gone too
    assert "stopped; everything shut down" in log.read_text()
