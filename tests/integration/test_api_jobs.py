"""The job API against the real broker, S3 server and a real worker with the tiny model: submit (JSON and with an
image), status, the event stream to the end, the content redirect, the list, the queue, cancel and idempotency.
(The same API through the official OpenAI SDK: `test_api_openai`.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.object_store import ObjectStore
from consumer.settings import Settings
from tests.integration.api_helpers import (
    IdentityProvider,
    api_settings,
    bearer,
    new_key,
    png,
    running_api,
    sse_messages,
)
from tests.support import SMALL, KafkaClient

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]  # the identity provider fixture


async def test_submit_follow_and_fetch_a_video_with_a_start_image(
    settings: Settings,
    start_worker: Callable[..., Any],
    kafka: KafkaClient,
    store: ObjectStore,
    tmp_path: Path,
    identity: IdentityProvider,
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    api = api_settings(tmp_path, identity.url)
    key = new_key(api, "shop-1")
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    async with (
        running_api(settings, api, tracer=tracer) as server,
        aiohttp.ClientSession(headers=bearer(key)) as http,
    ):
        await start_worker(settings, tracer=tracer)
        form = aiohttp.FormData()
        form.add_field("prompt", "a red sneaker turning")
        for name, value in SMALL.items():
            form.add_field(name, str(value))
        form.add_field("metadata", '{"sku": "42"}')
        form.add_field("input_reference", png(), filename="../../evil.exe", content_type="text/plain")
        async with http.post(f"{server.url}/v1/videos", data=form) as response:
            assert response.status == 202, await response.text()
            job = await response.json()
            assert response.headers["Location"] == f"/v1/videos/{job['id']}"
        assert job["status"] == "queued" and job["object"] == "video" and job["metadata"] == {"sku": "42"}
        assert response.headers["openai-poll-after-ms"] == "2000"  # VIDGEN_PROGRESS_INTERVAL_S
        image_url = job["request"]["image_url"]
        assert image_url.startswith(f"s3://{settings.s3_bucket}/uploads/") and image_url.endswith(".png")

        async with http.get(f"{server.url}/v1/videos/{job['id']}/events") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            messages = sse_messages(await asyncio.wait_for(response.text(), 120))
        statuses = [(m["event"], json.loads(m["data"])["status"]) for m in messages]
        assert statuses[-1] == ("status", "completed")
        assert ("status", "in_progress") in statuses
        versions = [int(m["id"]) for m in messages]
        assert versions == sorted(set(versions))
        events_url = f"{server.url}/v1/videos/{job['id']}/events"
        async with http.get(events_url, headers={"Last-Event-ID": str(versions[-2])}) as response:
            assert [int(m["id"]) for m in sse_messages(await response.text())] == versions[-1:]
        async with http.get(events_url, headers={"Last-Event-ID": str(versions[-1])}) as response:
            assert response.status == 204  # seen the end: an EventSource stops reconnecting

        async with http.get(f"{server.url}/v1/videos/{job['id']}") as response:
            done = await response.json()
        assert done["status"] == "completed" and done["progress"] == 100 and done["video"]["width"] == 256
        assert (done["size"], done["seconds"]) == ("256x256", "0.625")  # 5 frames at 8 fps
        assert done["created_at"] <= done["completed_at"] < done["expires_at"]
        async with http.get(f"{server.url}/v1/videos/{job['id']}/content", allow_redirects=False) as response:
            assert response.status == 302
            location = response.headers["Location"]
        async with aiohttp.ClientSession() as anonymous, anonymous.get(location) as video:
            assert video.status == 200 and (await video.read())[4:8] == b"ftyp"

        async with http.post(f"{server.url}/v1/videos/{job['id']}/cancel") as response:
            assert response.status == 409
            assert (await response.json())["error"]["code"] == "already_terminal"

    # One trace from the POST to the result: SERVER span, PRODUCER span, then the worker's spans.
    by_name = {span.name: span for span in exporter.get_finished_spans()}
    post, send = by_name["POST /v1/videos"], by_name[f"send {settings.requests_topic}"]
    assert send.parent is not None and send.parent.span_id == post.context.span_id
    [record] = await kafka.read(settings.results_topic, 1)
    traceparent = dict(record.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == format(post.context.trace_id, "032x")


async def test_a_job_cancelled_through_the_api_ends_failed_cancelled(
    settings: Settings, start_worker: Callable[..., Any], tmp_path: Path, identity: IdentityProvider
) -> None:
    api = api_settings(tmp_path, identity.url)
    key = new_key(api, "shop-1")
    async with running_api(settings, api) as server, aiohttp.ClientSession(headers=bearer(key)) as http:
        async with http.post(f"{server.url}/v1/videos", json={"prompt": "a cancelled vase", **SMALL}) as response:
            job = await response.json()
        async with http.post(f"{server.url}/v1/videos/{job['id']}/cancel") as response:
            assert response.status == 202
        await start_worker(settings)  # the cancel is on the control topic before the worker starts
        async with http.get(f"{server.url}/v1/videos/{job['id']}/events") as response:
            last = json.loads(sse_messages(await asyncio.wait_for(response.text(), 120))[-1]["data"])
    assert last["status"] == "failed" and last["error"]["code"] == "cancelled"
