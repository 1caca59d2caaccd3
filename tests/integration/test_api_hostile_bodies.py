"""Request bodies against `vidgen api` in its own process (issue 22): a request without a valid credential costs its
headers only (answered and closed at once, nothing of its body kept), an upload streams to a temporary file and on to
S3 instead of into memory, a body declared too large is refused unread, bodies in flight stay within the body budget
(503 past it), and `Expect: 100-continue` is honoured only once the credential passed. Memory is the process's own
resident set (psutil); the figures come from `bench.hostile_api`, the bounds here are generous."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.hostile_api import authenticated_upload, big_png, started_api, unauthenticated_uploads
from bench.hostile_clients import ApiUnderTest, stalled_upload
from consumer.dev.embedded import isolated_settings
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings
from tests.integration.api_helpers import bearer

pytestmark = pytest.mark.integration

_MIB = 1 << 20


@pytest.fixture(scope="module")
def settings_of_module(broker: str, s3_endpoint: str) -> Settings:
    return isolated_settings(broker, s3_endpoint, "bodies" + uuid.uuid4().hex[:8], topic_partitions=1)


@pytest.fixture(scope="module")
async def api(
    settings_of_module: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ApiUnderTest, dict[str, str]]]:
    async with started_api(settings_of_module, tmp_path_factory.mktemp("api")) as running:
        yield running


async def test_stalled_uploads_without_a_credential_cost_the_api_nothing_and_are_answered_at_once(
    api: tuple[ApiUnderTest, dict[str, str]],
) -> None:
    """The issue's attack: 25 connections, no credential, each 20 MB of a 21 MB body, then stalling. It took the
    API from 94 to 594 MiB (and it stayed there) while every request waited to be read."""
    running, _ = api
    figures = await unauthenticated_uploads(running, connections=25, declared=21_000_000, send=20_000_000)
    assert figures["answers"] == {"401": 25}, figures
    assert figures["slowest_answer_s"] < 5, figures
    assert figures["rss_peak_mib"] - figures["rss_before_mib"] < 48, figures
    assert figures["rss_after_close_mib"] - figures["rss_before_mib"] < 32, figures
    assert set(figures["healthz"]) == {"200"} and figures["healthz"]["200"] >= 3, figures


async def test_an_upload_streams_to_a_file_and_to_s3_without_copies_in_memory(
    api: tuple[ApiUnderTest, dict[str, str]], settings_of_module: Settings
) -> None:
    """One authenticated 19 MiB start image raised the peak by 79 MiB (four copies) before; now a few MiB, and the
    object stored is the image, byte for byte."""
    running, keys = api
    image = big_png(19 * _MIB)
    figures = await authenticated_upload(running, keys["shop-a"], image)
    assert figures["status"] == 202, figures
    assert figures["peak_increase_mib"] < 16, figures
    key = (await _latest_job(running, keys["shop-a"]))["request"]["image_url"].split("/", 3)[3]
    async with open_s3_client(settings_of_module) as client:
        store = ObjectStore(client, bucket=settings_of_module.s3_bucket, presign_ttl_s=60)
        stored = await store.get(settings_of_module.s3_bucket, key, max_bytes=len(image))
    assert stored is not None and hashlib.sha256(stored).digest() == hashlib.sha256(image).digest()


async def _latest_job(running: ApiUnderTest, key: str) -> Any:
    async with aiohttp.ClientSession(headers=bearer(key)) as http, http.get(f"{running.url}/v1/videos") as response:
        return (await response.json())["data"][0]


async def test_a_body_declared_over_its_cap_is_refused_before_it_is_sent(
    api: tuple[ApiUnderTest, dict[str, str]],
) -> None:
    """The answer comes while the client has sent nothing of the body: nothing was read, nothing was waited for."""
    running, keys = api
    auth = bearer(keys["shop-a"])
    for content_type, declared in (("multipart/form-data; boundary=x", 30_000_000), ("application/json", 2 * _MIB)):
        stall = await stalled_upload(
            running.port, declared=declared, send=0, headers=auth, content_type=content_type, answer_timeout_s=5
        )
        stall.writer.close()
        assert stall.status == 413, (content_type, stall)


async def test_expect_100_continue_is_answered_after_the_credential_and_not_before(
    api: tuple[ApiUnderTest, dict[str, str]],
) -> None:
    running, keys = api
    head = (
        "POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
        "{auth}Expect: 100-continue\r\n\r\n"
    )
    body = b'{"prompt": "a teapot", "width": 256, "height": 256, "num_frames": 5}'
    async with _connection(running.port) as (reader, writer):
        writer.write(head.format(length=len(body), auth="").encode())
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 401 ")
    async with _connection(running.port) as (reader, writer):
        writer.write(head.format(length=len(body), auth=f"Authorization: Bearer {keys['shop-a']}\r\n").encode())
        assert await asyncio.wait_for(reader.readline(), 10) == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        writer.write(body)
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 202 ")


@contextlib.asynccontextmanager
async def _connection(port: int) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def test_bodies_in_flight_stay_within_the_budget_and_the_rest_get_503(
    settings_of_module: Settings, tmp_path: Path
) -> None:
    """A budget of 1.5 MiB and bodies of up to 1 MiB: a stalled upload holds its 1 MiB, the next gets 503 with
    Retry-After at once (unread), and once the stalled one is gone the budget is whole again."""
    async with started_api(settings_of_module, tmp_path, max_body_bytes=_MIB, body_budget_bytes=3 * _MIB // 2) as (
        running,
        keys,
    ):
        auth = bearer(keys["shop-a"])
        holding = await stalled_upload(running.port, declared=_MIB, send=1000, headers=auth, answer_timeout_s=0.5)
        assert holding.status is None  # still arriving: held in the budget
        refused = await stalled_upload(running.port, declared=_MIB, send=0, headers=auth, answer_timeout_s=5)
        refused.writer.close()
        assert refused.status == 503
        small = await stalled_upload(running.port, declared=400_000, send=0, headers=auth, answer_timeout_s=0.5)
        small.writer.close()
        assert small.status is None  # what still fits is taken (and waits for its body)
        holding.writer.close()
        async with asyncio.timeout(10):
            while True:  # the API notices the closed connection on its own time
                again = await stalled_upload(running.port, declared=_MIB, send=0, headers=auth, answer_timeout_s=0.5)
                again.writer.close()
                if again.status is None:
                    break
                assert again.status == 503
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"{running.url}/v1/videos", data=b"x", headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 415  # and the API answers as usual
            async with http.get(f"{running.probe_url}/metrics") as response:
                metrics = await response.text()
        [refusals] = [line for line in metrics.splitlines() if line.startswith("vidgen_api_body_budget_refused_total ")]
        assert float(refusals.split()[1]) >= 1


async def test_an_image_part_over_the_limit_is_refused_as_it_streams(
    settings_of_module: Settings, tmp_path: Path
) -> None:
    """Sent chunked (no length declared): the part is cut off at the byte limit, 413 image_too_large."""
    limited = settings_of_module.model_copy(update={"image_max_bytes": 64 * 1024})
    async with started_api(limited, tmp_path) as (running, keys):
        form = aiohttp.FormData()
        form.add_field("prompt", "a lamp")
        form.add_field("input_reference", big_png(256 * 1024), filename="big.png", content_type="image/png")
        payload = form()
        body = await payload.as_bytes()

        async def chunked() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 16 * 1024):
                yield body[start : start + 16 * 1024]

        headers = {**bearer(keys["shop-a"]), "Content-Type": payload.content_type}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{running.url}/v1/videos", data=chunked(), headers=headers) as response,
        ):
            answer = await response.json()
        error = answer["error"]
        assert (response.status, error["code"], error["field"]) == (413, "image_too_large", "input_reference")
