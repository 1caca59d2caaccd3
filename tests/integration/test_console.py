"""The web console (issue 17) as a person uses it, in a real browser (Chromium driven by Playwright) against the real
stack: tansu, moto, the job API and, where a video must be rendered, a worker with the tiny model. Plus what a
browser cannot see: the security headers, and the content links the player loads the video through."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from consumer.api.auth.link_signing import LINK_TTL_S
from consumer.api.console.serving import STATIC
from consumer.core.keys import upload_prefix
from consumer.render.renderer import Renderer
from schemas.events import ErrorInfo, Timings, VideoResult
from schemas.job_api import VideoJob, VideoSubmission
from tests.integration.api_helpers import ApiStack, IdentityProvider, bearer, png
from tests.integration.console_helpers import CONSOLE_SETTINGS, PHONE, OpenPage, origin, screenshot, sign_in
from tests.support import KafkaClient, SlowPipeline, until, video_info

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures", "tests.integration.console_fixtures"]

BANNED = "forbidden-word"
# The module's API (api_fixtures.api_stack): a worker started beside it must not take a fixed port; progress on
# every step, so the bar moves; one banned term, for a refusal that names its field.
SETTINGS_OVERRIDES = CONSOLE_SETTINGS | {"banned_terms": (BANNED,)}
XSS = "<img src=x onerror=alert(1)>"
TIMES = "\N{MULTIPLICATION SIGN}"  # how the console writes sizes
RENDER = {"width": 256, "height": 256, "num_frames": 9, "num_inference_steps": 8}


async def call(stack: ApiStack, method: str, path: str, tenant: str = "shop-1") -> tuple[int, Any, dict[str, str]]:
    """Status, JSON body and headers of one API call with the tenant's key."""
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.request(method, f"{stack.url}{path}") as response,
    ):
        return response.status, await response.json(), dict(response.headers)


async def submit_json(stack: ApiStack, tenant: str = "shop-1", **fields: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.post(f"{stack.url}/v1/videos", json={"prompt": "a blue mug", **RENDER, **fields}) as response,
    ):
        assert response.status == 202, await response.text()
        job: dict[str, Any] = await response.json()
        return job


async def publish_result(stack: ApiStack, result: VideoResult) -> None:
    """What a worker publishes, written to the results topic as a worker would: the view reads it like any other."""
    client = KafkaClient(stack.settings)
    await client.start()
    try:
        await client.producer.send_and_wait(
            stack.settings.results_topic, key=result.request_id.encode(), value=result.model_dump_json().encode()
        )
    finally:
        await client.stop()


async def wait_status(stack: ApiStack, job_id: str, status: str, tenant: str = "shop-1") -> dict[str, Any]:
    """The job once the view says `status`, followed through its event stream (it ends at the terminal one)."""
    async with (
        aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http,
        http.get(f"{stack.url}/v1/videos/{job_id}/events", timeout=aiohttp.ClientTimeout(total=60)) as response,
    ):
        async for line in response.content:
            if line.startswith(b"data: "):
                job: dict[str, Any] = json.loads(line[6:])
                if job["status"] == status:
                    return job
    raise AssertionError(f"{job_id} never reached {status}")


def timings() -> Timings:
    now = datetime.now(UTC)
    return Timings(received_at=now, render_started_at=now, completed_at=now, render_ms=900, encode_ms=80, upload_ms=40)


# --- Headers: what a browser obeys without showing ------------------------------------------------------------


async def test_the_console_and_every_answer_carry_the_security_headers(api_stack: ApiStack) -> None:
    s3_origin = origin(api_stack.settings.s3_endpoint_url or "")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api_stack.url}/") as response:
            assert response.status == 200 and response.content_type == "text/html"
            page = await response.text()
            policy = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives == {
            "default-src": "'self'",
            "script-src": "'self'",
            "style-src": "'self'",
            "img-src": f"'self' {s3_origin} blob: data:",
            "media-src": f"'self' {s3_origin}",
            "connect-src": "'self'",
            "object-src": "'none'",
            "frame-ancestors": "'none'",
            "base-uri": "'none'",
            "form-action": "'self'",
        }
        # Every asset is ours, with its true type (nosniff makes the browser hold the server to it).
        assets = sorted(path.relative_to(STATIC) for path in STATIC.rglob("*") if path.is_file())
        types = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".ico": "image/x-icon"}
        for asset in assets:
            async with http.get(f"{api_stack.url}/console/{asset}") as response:
                assert response.status == 200, asset
                assert response.content_type == types[asset.suffix], asset
                assert response.headers["Content-Security-Policy"] == policy
                text = (await response.read()).decode("utf-8", "replace")  # the icon is binary
            assert not re.search(r"https?://|//cdn|@import", text), f"{asset} loads something from elsewhere"
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text
        assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script"
        assert not re.search(r"\son[a-z]+=|\sstyle=|javascript:", page), "inline handler or style"
        # The API's own answers: never a document, never framed, never sniffed.
        async with http.get(f"{api_stack.url}/v1/queue") as response:
            assert response.status == 401
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
            assert response.headers["Referrer-Policy"] == "no-referrer"
        async with http.get(f"{api_stack.url}/console/config.json") as response:
            limits = (await response.json())["image"]
        assert limits["max_bytes"] == api_stack.settings.image_max_bytes and "PNG" in limits["types"]


# --- In the browser. The test with a worker comes before every test that leaves jobs queued: the worker would
# --- render those first.


async def test_sign_in_with_a_key_keeps_it_in_this_tab_only_and_sign_out_forgets_it(
    api_stack: ApiStack, open_page: OpenPage
) -> None:
    page = (await open_page()).page
    key = api_stack.keys["shop-1"]
    await sign_in(page, api_stack.url, key)
    await expect(page.get_by_test_id("queue-queued")).to_have_text(re.compile(r"^\d+$"))
    assert await page.evaluate("sessionStorage.getItem('vidgen.credential')") == key
    assert await page.evaluate("localStorage.length") == 0
    assert await page.context.cookies() == []  # and never in the URL: sign_in checks
    await page.reload()  # the same tab: still signed in
    await expect(page.get_by_test_id("signout")).to_be_visible()
    await page.get_by_test_id("signout").click()
    await expect(page.get_by_test_id("signin-key")).to_be_visible()
    await expect(page.get_by_test_id("prompt")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    await page.reload()
    await expect(page.get_by_test_id("signin-key")).to_be_focused()


async def test_sign_in_with_a_token(api_stack: ApiStack, identity: IdentityProvider, open_page: OpenPage) -> None:
    page = (await open_page()).page
    await sign_in(page, api_stack.url, identity.token("shop-2"))
    await expect(page.get_by_test_id("queue-workers")).to_have_text(re.compile(r"^\d+$"))


async def test_a_bad_key_shows_a_clear_message(api_stack: ApiStack, open_page: OpenPage) -> None:
    page = (await open_page()).page
    await page.goto(f"{api_stack.url}/")
    error = page.get_by_test_id("signin-error")
    for credential, message in [
        ("vgk_" + "A" * 43, "That key or token was not accepted: API key not accepted."),
        ("hunter2", "That key or token was not accepted: the bearer credential is neither an API key nor a JWT."),
    ]:
        await page.get_by_test_id("signin-key").fill(credential)
        await page.get_by_test_id("signin-submit").click()
        await expect(error).to_have_text(message)
        await expect(page.get_by_test_id("signin-key")).to_have_attribute("aria-invalid", "true")
        await expect(page.get_by_test_id("signout")).to_be_hidden()
        assert await page.evaluate("sessionStorage.length") == 0


@pytest.mark.timeout(120)
async def test_an_early_enter_never_puts_the_key_in_the_url(api_stack: ApiStack, open_page: OpenPage) -> None:
    page, key, schema_held = (await open_page()).page, api_stack.keys["shop-1"], asyncio.Event()

    async def hold(route: Any) -> None:  # the console starts once it has the submission schema
        await schema_held.wait()
        await route.continue_()

    await page.route("**/openapi.json", hold)
    await page.goto(f"{api_stack.url}/", wait_until="commit")
    await page.get_by_test_id("signin-key").fill(key)
    await page.get_by_test_id("signin-key").press("Enter")  # a native submit would be a GET with ?credential=
    await expect(page.get_by_test_id("signin-submit")).to_be_disabled()
    assert key not in page.url
    schema_held.set()
    await sign_in(page, api_stack.url, key)  # enabled once the console has started; the key stays out of the URL


async def test_submit_with_a_photo_watch_the_progress_play_the_video_and_cancel_a_render(
    api_stack: ApiStack,
    open_page: OpenPage,
    start_worker: Callable[..., Any],
    make_renderer: Callable[[object], Renderer],
    tmp_path: Path,
) -> None:
    # Each denoising step held 0.25 s: a render long enough to watch, as a real one is.
    await start_worker(api_stack.settings, renderer=make_renderer(SlowPipeline(0.25)))
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    await page.get_by_test_id("prompt").fill("a red sneaker turning slowly on a white table")
    await page.get_by_test_id("image").set_input_files(
        files=[{"name": "sneaker.png", "mimeType": "image/png", "buffer": png(320, 240)}]
    )
    await expect(page.get_by_test_id("image-info")).to_have_text(re.compile(f"^PNG, 320 {TIMES} 240, "))
    await page.get_by_test_id("size").select_option("256x256")
    await page.get_by_test_id("length").fill("1")  # seconds: 9 frames at the tiny model's 8 fps
    await page.get_by_test_id("steps").fill(str(RENDER["num_inference_steps"]))
    await page.get_by_test_id("seed").fill("7")
    # Every value the rows' progress bars take, recorded in the page as it happens.
    await page.evaluate(
        """() => {
            window.progressSeen = [];
            new MutationObserver((changes) => {
                for (const change of changes) {
                    if (change.target.dataset.testid === "job-progress") window.progressSeen.push(change.target.value);
                }
            }).observe(document.getElementById("job-list"), {subtree: true, attributes: true,
                                                              attributeFilter: ["value"]});
        }"""
    )
    async with page.expect_response(lambda r: r.url.endswith("/v1/videos") and r.request.method == "POST") as posted:
        await page.get_by_test_id("submit").click()
    job = await (await posted.value).json()
    assert job["request"]["image_url"].startswith(f"s3://{api_stack.settings.s3_bucket}/uploads/")
    row = page.get_by_test_id(f"job-{job['id']}")
    await expect(row.get_by_test_id("job-status")).to_have_text("completed", timeout=60_000)
    await expect(row.get_by_test_id("job-progress")).to_have_attribute("value", "100")
    seen = await page.evaluate("window.progressSeen")
    assert any(0 < value < 100 for value in seen), seen  # it moved, driven by the event stream
    await expect(row.locator("img.thumb")).to_be_visible()

    await row.get_by_test_id("job-open").click()
    player = page.get_by_test_id("player")
    await expect(player).to_be_visible()
    await page.wait_for_function(
        "([w, h]) => { const v = document.querySelector('[data-testid=player]');"
        " return v.readyState >= 2 && v.videoWidth === w && v.videoHeight === h; }",
        arg=[RENDER["width"], RENDER["height"]],
        timeout=30_000,
    )
    started = await player.evaluate("v => v.currentTime")
    await page.wait_for_function(
        "t => document.querySelector('[data-testid=player]').currentTime !== t", arg=started, timeout=15_000
    )
    assert await player.evaluate("v => v.paused") is False
    src = await player.get_attribute("src")
    assert src is not None and src.startswith(f"/v1/videos/{job['id']}/content?token=")
    assert api_stack.keys["shop-1"] not in src
    await expect(page.get_by_test_id("download")).to_have_attribute("href", src)
    params = page.get_by_test_id("detail-params")
    await expect(params).to_contain_text("a red sneaker turning slowly on a white table")
    await expect(params).to_contain_text(f"256 {TIMES} 256")
    await expect(page.get_by_test_id("detail-timings")).to_contain_text("Render")
    await expect(page.get_by_test_id("detail-ids")).to_contain_text(re.compile(r"Trace id\s*[0-9a-f]{32}"))
    await screenshot(page, "player", tmp_path)

    # Render again with another seed: the same photo (already in the tenant's folder), a new job.
    async with page.expect_response(lambda r: r.url.endswith("/v1/videos") and r.request.method == "POST") as again:
        await page.get_by_test_id("render-again").click()
    second = await (await again.value).json()
    assert second["id"] != job["id"] and second["request"]["seed"] != 7
    assert second["request"]["image_url"] == job["request"]["image_url"]
    await expect(page.get_by_test_id("detail")).to_be_hidden()
    progress = page.get_by_test_id(f"job-{second['id']}").get_by_test_id("job-progress")
    await expect(progress).to_have_attribute("value", re.compile(r"^[1-9]\d?$"), timeout=60_000)
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, "jobs", tmp_path)

    # Cancel it while it renders: the worker stops it and the row says so.
    rerun = page.get_by_test_id(f"job-{second['id']}")
    await rerun.get_by_test_id("job-cancel").click()
    await expect(rerun.get_by_test_id("job-status")).to_have_text("cancelled", timeout=60_000)  # neutral: issue 25
    await expect(rerun.get_by_test_id("job-note")).to_have_text(re.compile(r"^Cancelled by you at \d"))
    await expect(rerun.get_by_test_id("job-cancel")).to_be_hidden()


async def test_content_links_open_one_completed_job_for_a_few_minutes(api_stack: ApiStack) -> None:
    """Over plain HTTP: the links the player loads the video through."""
    job = await submit_json(api_stack)
    other = await submit_json(api_stack, prompt="another mug")
    assert (await call(api_stack, "POST", f"/v1/videos/{job['id']}/links"))[0] == 409  # queued: nothing to link yet
    video = video_info().model_copy(
        update={
            "uri": f"s3://{api_stack.settings.s3_bucket}/videos/{job['id']}.mp4",
            "poster_uri": f"s3://{api_stack.settings.s3_bucket}/videos/{job['id']}.poster.jpeg",
        }
    )
    await publish_result(
        api_stack,
        VideoResult(
            request_id=job["id"],
            tenant_id="shop-1",
            status="completed",
            video=video,
            timings=timings(),
            worker_id="w1",
            model="tiny",
        ),
    )
    await wait_status(api_stack, job["id"], "completed")

    assert (await call(api_stack, "POST", f"/v1/videos/{job['id']}/links", "shop-2"))[0] == 404  # looks missing
    status, links, headers = await call(api_stack, "POST", f"/v1/videos/{job['id']}/links")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    expires = datetime.fromisoformat(links["expires_at"])
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= LINK_TTL_S
    assert api_stack.keys["shop-1"] not in json.dumps(links)
    token = links["video_url"].split("token=")[1]

    async with aiohttp.ClientSession() as anonymous:  # what a <video> element sends: no Authorization header
        for url, key in [(links["video_url"], f"videos/{job['id']}.mp4"), (links["poster_url"], ".poster.jpeg")]:
            async with anonymous.get(f"{api_stack.url}{url}", allow_redirects=False) as response:
                assert response.status == 302, await response.text()
                location = response.headers["Location"]
            assert location.startswith(api_stack.settings.s3_endpoint_url or "") and key in location
        refused = [
            f"/v1/videos/{other['id']}/content?token={token}",  # another job
            f"/v1/videos/{job['id']}/content?token={token[:-1]}X",  # altered
            f"/v1/videos/{job['id']}/content?token=garbage",
        ]
        for url in refused:
            async with anonymous.get(f"{api_stack.url}{url}", allow_redirects=False) as response:
                assert response.status == 401, url
                assert "expired" in (await response.json())["error"]["message"]
        # Off the content route a token authenticates nothing.
        for method, url in [("GET", f"/v1/videos/{job['id']}"), ("DELETE", f"/v1/videos/{other['id']}")]:
            async with anonymous.request(method, f"{api_stack.url}{url}?token={token}") as response:
                assert response.status == 401, (method, url)


async def test_cancel_a_queued_job_then_delete_it(api_stack: ApiStack, open_page: OpenPage) -> None:
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    await page.get_by_test_id("prompt").fill("a vase nobody will wait for")
    await page.get_by_test_id("size").select_option("256x256")
    template = page.get_by_test_id("allow-template")
    offered = "fallback" in VideoSubmission.model_fields  # issue 16's field, once it is in the contract
    if offered:
        await template.check()
    else:
        await expect(template).to_be_disabled()
    async with page.expect_request(lambda r: r.url.endswith("/v1/videos") and r.method == "POST") as posted:
        await page.get_by_test_id("submit").click()
    body = (await posted.value).post_data_buffer or b""
    assert (b'name="fallback"\r\n\r\ntemplate' in body) is offered
    response = await (await posted.value).response()
    assert response is not None
    job = await response.json()

    row = page.get_by_test_id(f"job-{job['id']}")
    await expect(row.get_by_test_id("job-status")).to_have_text("queued")
    async with page.expect_response(lambda r: r.url.endswith("/cancel") and r.request.method == "POST") as cancelled:
        await row.get_by_test_id("job-cancel").click()
    assert (await cancelled.value).status == 202
    await expect(row.get_by_test_id("job-cancel")).to_be_hidden()
    await expect(row.get_by_test_id("job-note")).to_have_text("cancel requested")
    # The view reads the command from the control topic (the stream carried it to the row as well): it is there
    # within a fetch or two, later on a busy machine.

    async def cancel_seen() -> bool:
        return (await call(api_stack, "GET", f"/v1/videos/{job['id']}"))[1].get("cancel_requested_at") is not None

    assert await until(cancel_seen, timeout_s=30)

    # Delete it from its dialog: it leaves the list, and the API forgets it.
    await row.get_by_test_id("job-open").click()
    async with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        await page.get_by_test_id("detail-delete").click()
    assert (await deleted.value).status == 200
    await expect(page.get_by_test_id("detail")).to_be_hidden()
    await expect(row).to_have_count(0)
    assert (await call(api_stack, "GET", f"/v1/videos/{job['id']}"))[0] == 404


async def test_a_refused_submission_names_the_field(api_stack: ApiStack, open_page: OpenPage) -> None:
    watched = await open_page()
    page = watched.page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    # Checked before anything is uploaded: not an image, whatever its name says.
    await page.get_by_test_id("image").set_input_files(
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": b"#!/bin/sh\necho not an image\n"}]
    )
    await expect(page.get_by_test_id("image-error")).to_have_text(
        "This file is not a JPEG, PNG, WEBP, GIF, BMP, TIFF image."
    )
    await page.get_by_test_id("prompt").fill("a lamp")
    await page.get_by_test_id("submit").click()
    await expect(page.get_by_test_id("form-error")).to_have_text("Choose another photo first.")
    assert not [url for url in watched.urls if url.endswith("/v1/videos") and "upload" not in url]
    await page.get_by_role("button", name="Remove photo").click()

    # Refused by the API: the message and the field, and the field is marked.
    await page.get_by_test_id("prompt").fill(f"a lamp with a {BANNED} on it")
    await page.get_by_test_id("submit").click()
    error = page.get_by_test_id("form-error")
    await expect(error).to_contain_text("Prompt: violates the content policy")  # the form's label
    await expect(error).to_contain_text("Not accepted:")
    await expect(page.get_by_test_id("prompt")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("prompt")).to_be_focused()
    assert BANNED not in (await error.text_content() or "")  # the API never echoes the term


async def test_a_rejected_job_shows_its_error_and_field(api_stack: ApiStack, open_page: OpenPage) -> None:
    folder = upload_prefix(prefix=api_stack.settings.s3_key_prefix, tenant_id="shop-1")
    job = await submit_json(api_stack, image_url=f"s3://{api_stack.settings.s3_bucket}/{folder}gone.png")
    error = ErrorInfo(
        code="image_not_found", message="start image not found in the bucket", retryable=False, field="image_url"
    )
    result = VideoResult(
        request_id=job["id"],
        tenant_id="shop-1",
        status="rejected",
        error=error,
        timings=timings(),
        worker_id="w1",
        model="tiny",
    )
    await publish_result(api_stack, result)
    await wait_status(api_stack, job["id"], "failed")  # OpenAI's status for a rejected job; error.code says why
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    row = page.get_by_test_id(f"job-{job['id']}")
    await expect(row.get_by_test_id("job-status")).to_have_text("failed")
    await expect(row.get_by_test_id("job-error")).to_have_text("start image not found in the bucket (Product photo)")
    await expect(row.get_by_test_id("job-cancel")).to_be_hidden()


@pytest.mark.skipif("degraded" not in VideoJob.model_fields, reason="needs issue 16's degraded jobs in the job API")
async def test_a_template_video_is_marked(api_stack: ApiStack, open_page: OpenPage) -> None:
    job = await submit_json(api_stack, prompt="a teapot while the GPUs are busy")
    bucket = api_stack.settings.s3_bucket
    video = video_info().model_copy(
        update={"uri": f"s3://{bucket}/videos/t.mp4", "poster_uri": f"s3://{bucket}/t.jpeg"}
    )
    result = VideoResult.model_validate(
        {
            **VideoResult(
                request_id=job["id"], tenant_id="shop-1", status="completed", video=video, timings=timings(),
                worker_id="template-1", model="template",
            ).model_dump(mode="json"),
            "degraded": True,
        }
    )  # fmt: skip
    await publish_result(api_stack, result)
    await wait_status(api_stack, job["id"], "completed")
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    row = page.get_by_test_id(f"job-{job['id']}")
    await expect(row.get_by_test_id("job-degraded")).to_have_text("template video")
    await row.get_by_test_id("job-open").click()
    await expect(page.locator("#detail-degraded")).to_be_visible()
    assert await page.locator("[data-testid=job-degraded]:visible").count() == 1  # only that one is marked


async def test_markup_in_a_prompt_is_shown_as_text(api_stack: ApiStack, open_page: OpenPage) -> None:
    page = (await open_page()).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-2"])
    await page.get_by_test_id("prompt").fill(XSS)
    async with page.expect_response(lambda r: r.url.endswith("/v1/videos") and r.request.method == "POST") as posted:
        await page.get_by_test_id("submit").click()
    job = await (await posted.value).json()
    row = page.get_by_test_id(f"job-{job['id']}")
    await expect(row.get_by_test_id("job-prompt")).to_have_text(XSS)
    await row.get_by_test_id("job-open").click()
    await expect(page.locator("#detail-title")).to_have_text(XSS)
    await expect(page.get_by_test_id("detail-params")).to_contain_text(XSS)
    assert await page.locator("img[src='x'], img[src$='/x']").count() == 0  # no element was made from it
    await page.keyboard.press("Escape")  # the dialog closes from the keyboard
    await expect(page.get_by_test_id("detail")).to_be_hidden()
    # (the page fixture fails the test if alert() ran)


async def test_a_phone_screen_has_no_horizontal_scroll(
    api_stack: ApiStack, open_page: OpenPage, tmp_path: Path
) -> None:
    await submit_json(api_stack, prompt="a very long product description " * 20)
    page = (await open_page(viewport=PHONE)).page
    await sign_in(page, api_stack.url, api_stack.keys["shop-1"])
    await expect(page.locator("[data-testid^='job-vid-']").first).to_be_visible()
    no_scroll = "document.documentElement.scrollWidth <= window.innerWidth"
    assert await page.evaluate(no_scroll), await page.evaluate("document.documentElement.scrollWidth")
    await screenshot(page, "phone", tmp_path)
    await page.locator("[data-testid^='job-vid-']").first.get_by_test_id("job-open").click()
    await expect(page.get_by_test_id("detail")).to_be_visible()
    assert await page.evaluate(no_scroll)
    dialog_width = await page.get_by_test_id("detail").evaluate("d => d.getBoundingClientRect().right")
    assert dialog_width <= PHONE["width"]
