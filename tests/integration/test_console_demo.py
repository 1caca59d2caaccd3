"""`vidgen demo --api` as a person runs it: it starts everything, prints the console's URL, a key that works and the
line that attaches other commands, renders a video submitted through the API (and one through `vidgen submit` to
its template worker), tells the console light starting values, and stops everything on Ctrl-C (SIGINT to its
process group, as a terminal sends it)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import async_playwright, expect

from consumer.dev.console_demo import DEMO_FORM
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.integration.api_helpers import bearer
from tests.integration.console_helpers import chromium, sign_in
from tests.support import REPO

pytestmark = pytest.mark.integration


@pytest.mark.timeout(240)
async def test_demo_api_serves_the_console_and_a_worker_until_interrupted(tmp_path: Path) -> None:
    # A fresh machine: no vidgen settings and no S3 credentials (another test may have set them in this process).
    env = {name: value for name, value in os.environ.items() if not name.startswith(("VIDGEN_", "AWS_"))}
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
            export = (await demo.stdout.readline()).decode()
        url, key = printed["console"].rstrip("/"), printed["api key"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url) and key.startswith("vgk_")
        assert export.startswith("export ")
        attach = dict(assignment.split("=", 1) for assignment in shlex.split(export)[1:])
        assert sorted(attach) == [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "VIDGEN_KAFKA_BOOTSTRAP_SERVERS",
            "VIDGEN_KAFKA_ENABLE_IDEMPOTENCE",
            "VIDGEN_S3_ENDPOINT_URL",
        ]
        async with aiohttp.ClientSession(headers=bearer(key)) as http:
            async with asyncio.timeout(60):  # the API answers 503 until its view has caught up
                while True:
                    async with http.get(f"{url}/v1/queue") as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.1)  # another process's view: polling is all a client can do
            async with http.get(f"{url}/") as response:
                assert response.status == 200 and response.content_type == "text/html"
            async with http.get(f"{url}/console/config.json") as response:
                assert (await response.json())["form"] == DEMO_FORM  # light values for a CPU
            body = {"prompt": "a green kettle", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}
            async with http.post(f"{url}/v1/videos", json=body) as response:
                assert response.status == 202, await response.text()
                job = await response.json()
            async with http.get(f"{url}/v1/videos/{job['id']}/events") as response:
                last = [line async for line in response.content if line.startswith(b"data: ")][-1]
        assert json.loads(last[6:])["status"] == "completed"
        # Another terminal, with the printed line: `vidgen watch` finds the API's job, `vidgen submit` reaches the
        # template worker (the template pool "allow a template video" falls back to).
        attached = {**env, **attach, "VIDGEN_REQUESTS_TOPIC": Settings.model_fields["template_topic"].default}
        watched = await _vidgen(["watch", job["id"], "--timeout", "50"], attached)
        assert VideoResult.model_validate_json(watched.stdout).status == "completed", watched.stderr
        small = ["--width", "256", "--height", "256", "--frames", "5", "--steps", "2", "--timeout", "50"]
        submitted = await _vidgen(["submit", "--prompt", "a blue vase", *small, "--wait"], attached)
        assert submitted.returncode == 0, submitted.stderr
        result = VideoResult.model_validate_json(submitted.stdout.partition("\n")[2])
        assert (result.model, result.degraded, result.status) == ("template", True, "completed")
        await _form_starts_light(url, key)
        broker_port = int(re.findall(r"broker \(tansu\) on 127\.0\.0\.1:(\d+)", log.read_text())[0])
    finally:
        if demo.returncode is None:
            os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in its terminal
    assert await asyncio.wait_for(demo.wait(), 60) == 0, log.read_text()[-3000:]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker_port), timeout=1):
        pass  # the embedded broker is gone too
    assert "stopped; everything shut down" in log.read_text()


async def _vidgen(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "vidgen"), *argv]  # the console script, as people run it
    return await asyncio.to_thread(
        subprocess.run, command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


async def _form_starts_light(url: str, key: str) -> None:
    """In a browser: the console's form opens at the values the demo's API suggests (the length in seconds once the
    form knows the model's fps: 9 frames at 8 fps ask for 1 s)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium()), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await sign_in(page, url, key)
            await expect(page.get_by_test_id("steps")).to_have_value(str(DEMO_FORM["num_inference_steps"]))
            await expect(page.get_by_test_id("length")).to_have_value("1")
            await expect(page.get_by_test_id("length-hint")).to_have_text(
                f"{DEMO_FORM['num_frames']} frames at 8 fps: 1.125 s of video."
            )
            await expect(page.get_by_test_id("size")).to_have_value(f"{DEMO_FORM['width']}x{DEMO_FORM['height']}")
        finally:
            await browser.close()
