"""Submitting through the API against the real broker and S3 server (no worker: jobs stay queued): what is refused
and how, idempotency, load shedding before anything is published, uploads, the list and the queue, cancel."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from PIL import Image

from consumer.dev.embedded import isolated_settings
from consumer.kafka.clients import client_options
from consumer.object_store import open_s3_client
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.integration.api_helpers import (
    ApiStack,
    IdentityProvider,
    api_settings,
    bearer,
    new_key,
    png,
    running_api,
    sse_messages,
)

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.api_fixtures"]

SETTINGS_OVERRIDES = {"image_max_pixels": 1_000_000}
API_OVERRIDES = {"max_body_bytes": 2 * 1024 * 1024}
_BODY = {"prompt": "a green kettle", "width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}


async def _post(
    stack: ApiStack,
    *,
    body: Any = None,
    form: aiohttp.FormData | None = None,
    headers: dict[str, str] | None = None,
    tenant: str = "shop-1",
    data: bytes | None = None,
) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http:
        options: dict[str, Any] = {"json": body} if body is not None else {"data": form if form is not None else data}
        async with http.post(f"{stack.url}/v1/videos", headers=headers or {}, **options) as response:
            return response.status, dict(response.headers), await response.json()


async def _get(stack: ApiStack, path: str, tenant: str = "shop-1") -> tuple[int, Any]:
    async with aiohttp.ClientSession(headers=bearer(stack.keys[tenant])) as http, http.get(stack.url + path) as r:
        return r.status, await r.json()


async def _records(settings: Settings, topic: str) -> list[Any]:
    """Everything on a topic so far (the API waited for the acks, so it is all there)."""
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        for partition, end in ends.items():
            while await consumer.position(partition) < end:
                for batch in (await consumer.getmany(partition, timeout_ms=200)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


def _form(image: bytes, **fields: Any) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in {**_BODY, **fields}.items():
        form.add_field(name, str(value))
    form.add_field("input_reference", image, filename="photo.png", content_type="image/png")
    return form


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({**_BODY, "request_id": "mine"}, 422, "unknown_field", "request_id"),
        ({**_BODY, "tenant_id": "shop-2"}, 422, "unknown_field", "tenant_id"),
        ({**_BODY, "<script>": 1}, 422, "unknown_field", None),
        ({**_BODY, "width": 250}, 422, "invalid_field", "width"),
        ({"width": 256}, 422, "missing_field", "prompt"),
        ({**_BODY, "prompt": "a\u202eshoe"}, 422, None, "prompt"),
        ([1, 2], 422, "invalid_body", None),
    ],
)
async def test_what_the_worker_would_reject_is_refused_at_once(
    api_stack: ApiStack, body: Any, status: int, code: str | None, field: str | None
) -> None:
    got, _, answer = await _post(api_stack, body=body)
    assert got == status
    error = answer["error"]
    assert code is None or error["code"] == code
    assert field is None or error["field"] == field
    assert "<script>" not in json.dumps(answer) and "\u202e" not in json.dumps(answer)  # nothing echoed raw


async def test_bodies_of_the_wrong_type_size_or_syntax(api_stack: ApiStack) -> None:
    async with aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-1"])) as http:
        url = f"{api_stack.url}/v1/videos"
        async with http.post(url, data=b"prompt=x", headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415 and (await response.json())["error"]["code"] == "unsupported_media_type"
        async with http.post(url, data=b"{not json", headers={"Content-Type": "application/json"}) as response:
            assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_json"
        boundary = "b0undary"
        broken = f"--{boundary}\r\nnot a header line--{boundary}--\r\n".encode()  # found by the fuzzer: was a 500
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        async with http.post(url, data=broken, headers=headers) as response:
            assert response.status == 400 and (await response.json())["error"]["code"] == "invalid_body"
        big = io.BytesIO(b"x" * (api_stack.api.max_body_bytes + 1))
        async with http.post(url, data=big, headers={"Content-Type": "application/json"}) as response:
            assert response.status == 413 and "error" in await response.json()
        async with http.get(f"{api_stack.url}/v1/nothing-here") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "not_found"
        async with http.put(url) as response:
            assert response.status == 405 and (await response.json())["error"]["code"] == "method_not_allowed"


async def test_images_are_checked_by_their_bytes_and_header(api_stack: ApiStack) -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    status, _, answer = await _post(api_stack, form=_form(eps))
    assert (status, answer["error"]["code"], answer["error"]["param"]) == (
        415,
        "unsupported_image_type",
        "input_reference",
    )
    status, _, answer = await _post(api_stack, form=_form(png(1200, 1000)))  # 1.2 MP > the 1 MP limit
    assert (status, answer["error"]["code"]) == (413, "image_too_large")
    truncated = png()[:40]
    status, _, answer = await _post(api_stack, form=_form(truncated))
    assert status in (415, 422) and answer["error"]["field"] == "input_reference"
    status, _, answer = await _post(api_stack, form=_form(png(), image_url="s3://other-bucket/x.png"))
    assert (status, answer["error"]["field"]) == (422, "image_url")
    old_name = aiohttp.FormData({"prompt": "a vase"})
    old_name.add_field("image", png(), filename="photo.png", content_type="image/png")
    status, _, answer = await _post(api_stack, form=old_name)
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (422, "unknown_field", "image")
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32)).save(jpeg, format="JPEG")
    status, _, job = await _post(api_stack, form=_form(jpeg.getvalue()))  # the filename says .png: ignored
    assert status == 202 and job["request"]["image_url"].endswith(".jpg")


async def test_the_same_idempotency_key_returns_the_same_job(api_stack: ApiStack) -> None:
    headers = {"Idempotency-Key": "order-4711"}
    first = await _post(api_stack, body=_BODY, headers=headers)
    again = await _post(api_stack, body=_BODY, headers=headers)
    assert first[0] == again[0] == 202
    assert first[2]["id"] == again[2]["id"] and again[1].get("Idempotent-Replayed") == "true"
    other_tenant = await _post(api_stack, body=_BODY, headers=headers, tenant="shop-2")
    assert other_tenant[0] == 202 and other_tenant[2]["id"] != first[2]["id"]
    changed = await _post(api_stack, body={**_BODY, "prompt": "something else"}, headers=headers)
    assert changed[0] == 409 and changed[2]["error"]["code"] == "idempotency_key_reused"
    bad = await _post(api_stack, body=_BODY, headers={"Idempotency-Key": "has space"})
    assert bad[0] == 422 and bad[2]["error"]["field"] == "Idempotency-Key"
    published = [r for r in await _records(api_stack.settings, api_stack.settings.requests_topic)]
    assert [r.key.decode() for r in published].count(first[2]["id"]) == 1  # never a second render


async def test_list_pages_newest_first_and_the_queue(api_stack: ApiStack) -> None:
    created = [(await _post(api_stack, body=_BODY, tenant="shop-2"))[2]["id"] for _ in range(3)]
    status, first = await _get(api_stack, "/v1/videos?limit=2", tenant="shop-2")
    assert status == 200 and first["object"] == "list" and first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == (first["data"][0]["id"], first["data"][-1]["id"])
    status, second = await _get(api_stack, f"/v1/videos?limit=2&after={first['last_id']}", tenant="shop-2")
    listed = [job["id"] for job in first["data"] + second["data"]]
    assert listed[:3] == created[::-1] and len(set(listed)) == len(listed)
    status, oldest = await _get(api_stack, "/v1/videos?limit=100&order=asc", tenant="shop-2")
    assert [job["id"] for job in oldest["data"]] == listed[::-1]
    status, answer = await _get(api_stack, "/v1/videos?order=sideways", tenant="shop-2")
    assert (status, answer["error"]["param"]) == (422, "order")
    status, queue = await _get(api_stack, "/v1/queue")
    assert status == 200 and queue["queued"] >= 3 and queue["workers_active"] == 0
    assert queue["estimated_wait_s"] is None  # no worker seen: nothing to estimate with
    status, _ = await _get(api_stack, "/v1/videos?limit=1000")
    assert status == 422
    status, answer = await _get(api_stack, "/v1/queue?limit=1")
    assert (status, answer["error"]["code"], answer["error"]["field"]) == (422, "unknown_parameter", "limit")
    status, answer = await _get(api_stack, "/v1/videos?%E2%80%AEevil=1")
    assert status == 422 and answer["error"]["field"] == "query parameter #1 (a 5-character name)"


async def test_cancel_and_delete_publish_one_control_record_each_and_content_waits(api_stack: ApiStack) -> None:
    _, _, job = await _post(api_stack, body=_BODY)
    _, _, other = await _post(api_stack, body=_BODY)
    status, _ = await _get(api_stack, f"/v1/videos/{job['id']}/content")
    assert status == 409
    async with aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-1"])) as http:
        async with http.post(f"{api_stack.url}/v1/videos/{job['id']}/cancel") as response:
            assert response.status == 202 and (await response.json())["id"] == job["id"]
        async with http.delete(f"{api_stack.url}/v1/videos/{other['id']}") as response:
            assert response.status == 200
            assert await response.json() == {"id": other["id"], "object": "video.deleted", "deleted": True}
        async with http.delete(f"{api_stack.url}/v1/videos/{other['id']}") as response:
            assert response.status == 404  # gone
    controls = [r for r in await _records(api_stack.settings, api_stack.settings.control_topic)]
    actions = {
        key: [json.loads(r.value)["action"] for r in controls if r.key == key.encode()]
        for key in (job["id"], other["id"])
    }
    assert actions == {job["id"]: ["cancel"], other["id"]: ["delete"]}
    assert all(json.loads(r.value)["tenant_id"] == "shop-1" for r in controls if r.key == job["id"].encode())
    assert any(r.headers and dict(r.headers).get("traceparent") for r in controls)
    spans = {(span.name, span.kind.name) for span in api_stack.spans.get_finished_spans()}
    expected = {"POST /v1/videos/{id}/cancel", "DELETE /v1/videos/{id}", f"send {api_stack.settings.control_topic}"}
    assert expected <= {name for name, _ in spans}


async def test_load_shedding_refuses_before_anything_is_published(
    broker: str, s3_endpoint: str, tmp_path: Path, identity: IdentityProvider
) -> None:
    settings = isolated_settings(broker, s3_endpoint, "shed" + uuid.uuid4().hex[:8], topic_partitions=1)
    api = api_settings(tmp_path, identity.url, max_queued=2)
    key = new_key(api, "shop-1")
    async with running_api(settings, api) as server, aiohttp.ClientSession(headers=bearer(key)) as http:
        statuses = []
        for index in range(3):
            form = _form(png(color=(index, 0, 0)))
            async with http.post(f"{server.url}/v1/videos", data=form) as response:
                statuses.append(response.status)
                assert response.status != 422, await response.text()
                if response.status == 503:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error"]["code"] == "queue_full"
    assert statuses == [202, 202, 503]
    assert len(await _records(settings, settings.requests_topic)) == 2
    async with open_s3_client(settings) as s3:
        listed = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix="uploads/")
    assert len(listed.get("Contents", [])) == 2  # the refused image was not uploaded either


async def test_duplicate_and_conflicting_results_never_regress_a_job(api_stack: ApiStack) -> None:
    _, _, job = await _post(api_stack, body=_BODY)
    now = datetime.now(UTC)

    def result(status: str) -> bytes:
        body: dict[str, Any] = {
            "request_id": job["id"],
            "tenant_id": "shop-1",
            "status": status,
            "timings": {"received_at": now, "completed_at": now},
            "worker_id": "w-test",
            "model": "tiny",
        }
        if status == "failed":
            body["error"] = {"code": "render_failed", "message": "late duplicate", "retryable": False}
        return VideoResult.model_validate(body).model_dump_json().encode()

    producer = AIOKafkaProducer(**client_options(api_stack.settings))
    await producer.start()
    try:
        for status in ("completed", "completed", "failed"):  # at-least-once: a duplicate, then a contradiction
            await producer.send_and_wait(api_stack.settings.results_topic, result(status), key=job["id"].encode())
    finally:
        await producer.stop()
    url = f"/v1/videos/{job['id']}/events"
    async with (
        aiohttp.ClientSession(headers=bearer(api_stack.keys["shop-1"])) as http,
        http.get(api_stack.url + url) as r,
    ):
        last = json.loads(sse_messages(await asyncio.wait_for(r.text(), 30))[-1]["data"])
    assert last["status"] == "completed"
    async with asyncio.timeout(10):
        while True:  # the contradicting result may be read just after the stream ended
            async with aiohttp.ClientSession() as http, http.get(f"{api_stack.operator_url}/metrics") as r:
                metrics = await r.text()
            if 'vidgen_api_view_ignored_total{reason="conflicting_result"} 1.0' in metrics:
                break
            await asyncio.sleep(0.05)
    assert 'vidgen_api_view_ignored_total{reason="duplicate_result"} 1.0' in metrics
    assert (await _get(api_stack, f"/v1/videos/{job['id']}"))[1]["status"] == "completed"
