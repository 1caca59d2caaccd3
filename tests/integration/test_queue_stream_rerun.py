"""Issue 25's last two gaps, against the real stack (tansu, moto, the job API, a worker with the tiny model; the
console in Chromium driven by Playwright): a queued job's event stream sends its new `queue_position` when jobs
ahead of it leave the queue or another tenant's job joins it, though the job itself did not change; and a job keeps
its fallback choice (its own, else its tenant's default), which every replica's view reads from the request record
and the console's "Render again" resubmits."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from consumer.core.degrade import FALLBACK_HEADER
from schemas.events import VideoResult
from tests.integration.api_helpers import ApiStack, api_settings, bearer, running_api
from tests.integration.console_helpers import OpenPage, sign_in
from tests.integration.test_console import RENDER, call, publish_result, submit_json, timings, wait_status
from tests.support import KafkaClient

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures", "tests.integration.console_fixtures"]

SETTINGS_OVERRIDES = {"http_host": "127.0.0.1", "http_port": 0, "progress_interval_s": 0.0}
# The pool is never down here (no worker runs in the first test): a job with a fallback goes to the GPU pool.
API_OVERRIDES = {"tenant_fallback": {"shop-2": "template"}, "pool_down_s": 3600.0}


async def _messages(stack: ApiStack, job_id: str, tenant: str) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """The job's event stream, message by message: `(id, job)`."""
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.get(f"{stack.url}/v1/videos/{job_id}/events", timeout=aiohttp.ClientTimeout(total=120)) as response,
    ):
        assert response.status == 200
        event_id = 0
        async for line in response.content:
            if line.startswith(b"id: "):
                event_id = int(line[4:])
            elif line.startswith(b"data: "):
                yield event_id, json.loads(line[6:])


async def test_a_queued_jobs_stream_follows_its_place_in_line(api_stack: ApiStack, open_page: OpenPage) -> None:
    first = await submit_json(api_stack, "shop-1", prompt="first in line")
    second = await submit_json(api_stack, "shop-1", prompt="second in line")
    assert second["queue_position"] == 2
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    note = page.get_by_test_id(f"job-{second['id']}").get_by_test_id("job-note")
    await expect(note).to_have_text(re.compile("^queued, 2nd in line"))
    stream = _messages(api_stack, second["id"], "shop-1")
    try:
        async with asyncio.timeout(60):
            version, job = await anext(stream)
            assert (job["status"], job["queue_position"]) == ("queued", 2)

            # A worker answers the job ahead: the second job did not change, its place did.
            done = VideoResult(
                request_id=first["id"], tenant_id="shop-1", status="completed", timings=timings(), worker_id="w1",
                model="tiny",
            )  # fmt: skip
            await publish_result(api_stack, done)
            moved_id, moved = await anext(stream)
            assert (moved_id, moved["status"], moved["queue_position"]) == (version, "queued", 1)
            await expect(note).to_have_text(re.compile("^queued, 1st in line"))  # the console's row, from its stream

            # Another tenant's job joins the lane: one of its jobs is served per round, so it may start first.
            await submit_json(api_stack, "shop-2", prompt="another shop's mug", fallback="none")
            moved_id, moved = await anext(stream)
            assert (moved_id, moved["queue_position"]) == (version, 2)
            await expect(note).to_have_text(re.compile("^queued, 2nd in line"))
    finally:
        await stream.aclose()


async def test_a_job_keeps_its_fallback_on_every_replica_and_render_again_resubmits_it(
    api_stack: ApiStack,
    open_page: OpenPage,
    start_worker: Callable[..., Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    similar = await submit_json(api_stack, "shop-1", fallback="similar", prompt="a similar mug")
    default = await submit_json(api_stack, "shop-1", prompt="the service's default")
    tenant_default = await submit_json(api_stack, "shop-2", prompt="the tenant's default")
    assert (similar["fallback"], default["fallback"], tenant_default["fallback"]) == ("similar", "none", "template")

    # On the topic: the choice travels with the request, so a replica whose view reads it afresh knows it too.
    client = KafkaClient(api_stack.settings)
    await client.start()
    try:
        records = (await client.read_to_end(api_stack.settings.requests_topic))[0]
    finally:
        await client.stop()
    (record,) = [record for record in records if record.key == similar["id"].encode()]
    assert dict(record.headers)[FALLBACK_HEADER] == b"similar"
    other_api = api_settings(
        tmp_path_factory.mktemp("replica"), None, keys_file=api_stack.api.keys_file, id_key=api_stack.api.id_key
    )
    async with (
        running_api(api_stack.settings, other_api) as replica,
        aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-1"])) as http,
        http.get(f"{replica.url}/v1/videos/{similar['id']}") as response,
    ):
        assert response.status == 200
        assert (await response.json())["fallback"] == "similar"

    # The console renders it again with the same choice, once a worker finished it.
    await start_worker(api_stack.settings)
    await wait_status(api_stack, similar["id"], "completed")
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    row = page.get_by_test_id(f"job-{similar['id']}")
    await row.get_by_test_id("job-open").click()
    await expect(page.get_by_test_id("detail-params")).to_contain_text("an earlier video of the same photo")
    async with page.expect_response(lambda r: r.url.endswith("/v1/videos") and r.request.method == "POST") as posted:
        await page.get_by_test_id("render-again").click()
    response = await posted.value
    sent = json.loads(response.request.post_data or "{}")
    assert (sent["fallback"], sent["prompt"]) == ("similar", "a similar mug")
    again = await response.json()
    assert again["fallback"] == "similar" and again["id"] != similar["id"]
    status, stored, _ = await call(api_stack, "GET", f"/v1/videos/{again['id']}")
    assert (status, stored["fallback"], stored["request"]["num_frames"]) == (200, "similar", RENDER["num_frames"])
