"""The truth about a job (issue 25, items 1-6), in a real browser (Chromium driven by Playwright) and over HTTP against
the real stack: tansu, moto, the job API and a worker with the tiny model. Progress moves through the worker's phases
and reaches 100 only when the job is completed; a queued job has its place in line and, once the only worker is
silent past its heartbeat, waits for a worker (and offers a template video now), and the queue says no worker is
active; timings count from the submission; the download is an attachment with a readable name and HEAD answers; a
cancelled job is shown neutrally and the cancel's answer says so; the list filters by status, SKU and date; the start
image is a thumbnail; "Render again" only on finished jobs; no trace row when no trace is known."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from playwright.async_api import expect

from consumer.render.renderer import Renderer
from schemas.events import ErrorInfo, VideoResult
from tests.integration.api_helpers import ApiStack, bearer, png
from tests.integration.console_helpers import CONSOLE_SETTINGS, OpenPage, sign_in
from tests.integration.test_console import RENDER, call, publish_result, submit_json, timings, wait_status
from tests.support import SlowPipeline

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures", "tests.integration.console_fixtures"]

SETTINGS_OVERRIDES = CONSOLE_SETTINGS
# A worker silent for 3 s while jobs wait is not active; the pool is down after 4 s of that.
API_OVERRIDES = {"worker_heartbeat_s": 3.0, "pool_down_s": 4.0}
SKU = "Red Sneaker 42"


async def test_progress_moves_through_the_phases_and_the_download_is_named(
    api_stack: ApiStack,
    open_page: OpenPage,
    start_worker: Callable[..., Any],
    make_renderer: Callable[[object], Renderer],
) -> None:
    worker = await start_worker(api_stack.settings, renderer=make_renderer(SlowPipeline(0.25)))
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    await page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => {
                for (const row of document.querySelectorAll("#job-list li")) {
                    const bar = row.querySelector("[data-testid=job-progress]");
                    const note = row.querySelector("[data-testid=job-note]").textContent;
                    const status = row.querySelector("[data-testid=job-status]").textContent;
                    window.seen.push([status, Number(bar.value), note]);
                }
            }).observe(document.getElementById("job-list"), {subtree: true, childList: true, attributes: true,
                                                              characterData: true});
        }"""
    )
    await page.get_by_test_id("prompt").fill("a red sneaker on a white table")
    await page.get_by_test_id("image").set_input_files(
        files=[{"name": "sneaker.png", "mimeType": "image/png", "buffer": png(320, 240)}]
    )
    await page.get_by_test_id("size").select_option("256x256")
    await page.get_by_test_id("length").fill("1")  # seconds: 9 frames at the tiny model's 8 fps
    await page.get_by_test_id("steps").fill(str(RENDER["num_inference_steps"]))
    async with page.expect_response(lambda r: r.url.endswith("/v1/videos") and r.request.method == "POST") as posted:
        await page.get_by_test_id("submit").click()
    job = await (await posted.value).json()
    assert job["phase"] in ("queued", "preparing") and job["progress"] < 100
    row = page.get_by_test_id(f"job-{job['id']}")
    await expect(row.get_by_test_id("job-status")).to_have_text("completed", timeout=60_000)
    await expect(row.get_by_test_id("job-progress")).to_have_attribute("value", "100")
    seen: list[list[Any]] = await page.evaluate("window.seen")
    notes = [note for status, _, note in seen if status == "in_progress"]
    assert any(re.match(r"denoising \d+/8 · \d+%", note) for note in notes), notes
    assert any(note.startswith(("decoding", "encoding", "uploading")) for note in notes), notes
    assert all(value < 100 for status, value, _ in seen if status != "completed"), seen  # 100 only when completed

    done = (await call(api_stack, "GET", f"/v1/videos/{job['id']}"))[1]
    assert (done["phase"], done["progress"], done.get("queue_position")) == ("completed", 100, None)

    # The detail: the start image as a thumbnail (not an s3:// path), timings from the submission, the trace.
    await row.get_by_test_id("job-open").click()
    thumb = page.get_by_test_id("detail-start-image")
    await expect(thumb).to_be_visible()
    await page.wait_for_function("() => document.getElementById('detail-start-image').naturalWidth === 320")
    await expect(page.get_by_test_id("detail-params")).not_to_contain_text("s3://")
    timings_text = await page.get_by_test_id("detail-timings").inner_text()
    total = float(re.search(r"Total\s+([\d.]+) s", timings_text).group(1))  # type: ignore[union-attr]
    created = datetime.fromtimestamp(done["created_at"], UTC)
    assert total >= (datetime.fromisoformat(done["timings"]["completed_at"]) - created).total_seconds() - 0.1
    await expect(page.get_by_test_id("detail-ids")).to_contain_text("Trace id")
    await expect(page.get_by_test_id("render-again")).to_be_visible()

    # The download: HEAD answers; S3 serves the MP4 as an attachment under a readable name.
    href = await page.get_by_test_id("download").get_attribute("href")
    assert href is not None
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.head(f"{api_stack.url}{href}", allow_redirects=False) as response:
            assert response.status == 302
        async with anonymous.get(f"{api_stack.url}{href}") as response:
            assert response.status == 200
            disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="a-red-sneaker-on-a-white-table-')
    assert disposition.endswith(f"{quote(job['id'].replace(':', '-'), safe='')}.mp4")
    await page.get_by_test_id("detail-close").click()
    await worker.shutdown()  # the next test's queue has no worker


async def test_a_queue_without_a_worker_says_so_and_a_cancel_is_neutral(
    api_stack: ApiStack, open_page: OpenPage
) -> None:
    first = await submit_json(api_stack, "shop-2", metadata={"sku": SKU})
    second = await submit_json(api_stack, "shop-2", prompt="a green mug")
    assert (first["queue_position"], second["queue_position"]) == (1, 2)
    # The only worker stopped with the last test: once the jobs waited past its heartbeat it is not active.
    async with aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-2"])) as http:
        for _ in range(120):
            async with http.get(f"{api_stack.url}/v1/queue") as response:
                queue = await response.json()
            if queue["pool_down"]:
                break
            await asyncio.sleep(0.5)
    assert queue["pool_down"] and queue["workers_active"] == 0, queue
    waiting = (await call(api_stack, "GET", f"/v1/videos/{second['id']}", "shop-2"))[1]
    assert (waiting["phase"], waiting["queue_position"]) == ("waiting_for_worker", 2)

    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-2"])
    await expect(page.get_by_test_id("queue-down")).to_have_text(re.compile("No GPU worker is active"))
    row = page.get_by_test_id(f"job-{second['id']}")
    await expect(row.get_by_test_id("job-note")).to_have_text(re.compile("^waiting for a worker"))
    await row.get_by_test_id("job-open").click()
    await expect(page.get_by_test_id("render-again")).to_be_hidden()  # not finished
    await expect(page.get_by_test_id("detail-ids")).not_to_contain_text("Trace id")  # not submitted from this tab
    async with page.expect_response(lambda r: r.url.endswith("/cancel")) as cancelled:
        await page.get_by_test_id("detail-cancel").click()
    answer = await (await cancelled.value).json()
    assert answer["cancel_requested_at"] is not None and answer["status"] == "queued"
    await page.get_by_test_id("detail-close").click()

    # The job still waiting: "use a template video now" submits it again, a template video allowed, and cancels it.
    stuck = page.get_by_test_id(f"job-{first['id']}")
    async with page.expect_response(lambda r: r.url.endswith("/v1/videos") and r.request.method == "POST") as posted:
        await stuck.get_by_test_id("job-template").click()
    again = await (await posted.value).json()
    assert (again["degraded"], again["degraded_reason"], again["metadata"]) == (True, "pool_down", {"sku": SKU})
    await expect(stuck.get_by_test_id("job-note")).to_have_text("cancel requested")
    await expect(page.get_by_test_id(f"job-{again['id']}").get_by_test_id("job-degraded")).to_be_visible()

    # A worker ends it as cancelled: the row says so neutrally, at the local time of the cancel.
    error = ErrorInfo(code="cancelled", message="cancelled by its tenant", retryable=False)
    result = VideoResult(
        request_id=second["id"], tenant_id="shop-2", status="failed", error=error, timings=timings(), worker_id="w1",
        model="tiny",
    )  # fmt: skip
    await publish_result(api_stack, result)
    await wait_status(api_stack, second["id"], "failed", "shop-2")
    local = await page.evaluate(
        "t => new Date(t * 1000).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'})",
        answer["cancel_requested_at"],
    )
    await expect(row.get_by_test_id("job-status")).to_have_text("cancelled")
    await expect(row.get_by_test_id("job-note")).to_have_text(f"Cancelled by you at {local}")
    await expect(row.get_by_test_id("job-error")).to_be_hidden()

    # The list's filters, in the API and the console.
    async def listed(query: str) -> list[str]:
        status, body, _ = await call(api_stack, "GET", f"/v1/videos?{query}", "shop-2")
        assert status == 200, body
        return [item["id"] for item in body["data"]]

    assert await listed("status=failed") == [second["id"]]
    assert await listed(f"metadata[sku]={quote(SKU)}") == [again["id"], first["id"]]  # newest first
    assert await listed(f"metadata[sku]={quote(SKU)}&status=completed") == []
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert await listed(f"created_after={tomorrow}") == []
    assert (await call(api_stack, "GET", "/v1/videos?status=done", "shop-2"))[0] == 422
    await page.get_by_test_id("filter-sku").fill(SKU)
    await page.get_by_test_id("filter-sku").press("Enter")
    await expect(page.locator("#job-list li")).to_have_count(2)
    await expect(page.get_by_test_id(f"job-{first['id']}")).to_be_visible()
    await page.get_by_test_id("filter-sku").fill("")
    await page.get_by_test_id("filter-status").select_option("failed")
    await expect(page.locator("#job-list li")).to_have_count(1)
    await expect(row).to_be_visible()
