"""The whole path against the real broker and S3 server: request in, MP4 on S3, result event out. Tests that only
need their own request ids share the module's worker (with a banned-terms list); the others start their own."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import aiohttp
import av
import pytest
from PIL import Image

from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.object_store import ObjectStore
from consumer.render.standin import StandInPipeline
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import KafkaClient, request_body

MODULE_WORKER_OVERRIDES = {"banned_terms": ("counterfeit*", "fake rolex")}


async def _fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.read()


def _decode(mp4: bytes) -> tuple[int, int, int, str]:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return frames, stream.width, stream.height, stream.codec_context.name


async def test_text_to_video_completes_with_a_playable_mp4(
    module_settings: Settings, module_kafka: KafkaClient, module_worker: Any
) -> None:
    settings, kafka = module_settings, module_kafka
    body = request_body(metadata={"product_id": "p-1"}, fps=10)
    await kafka.send(body, headers=[("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])

    result = (await kafka.results_for(body["request_id"]))[body["request_id"]]

    assert result.status == "completed", result.error
    assert result.tenant_id == "shop-1"
    assert result.metadata == {"product_id": "p-1"}
    assert result.cache_hit is False
    assert result.model == "tiny"
    assert result.worker_id == settings.worker_id
    video = result.video
    assert video is not None
    assert video.uri.startswith(f"s3://{settings.s3_bucket}/videos/")
    assert "shop-1" not in video.uri  # no user input in object keys
    mp4 = await _fetch(video.url)  # presigned URL works
    assert len(mp4) == video.bytes
    assert hashlib.sha256(mp4).hexdigest() == video.sha256
    frames, width, height, codec = _decode(mp4)
    assert (frames, width, height, codec) == (5, 256, 256, "h264")
    assert (video.num_frames, video.width, video.height, video.fps) == (5, 256, 256, 10)
    assert video.duration_s == pytest.approx(0.5)
    assert mp4.find(b"moov") < mp4.find(b"mdat")  # faststart
    poster = Image.open(io.BytesIO(await _fetch(video.poster_url)))
    assert (poster.format, poster.size) == ("JPEG", (256, 256))
    timings = result.timings
    assert timings.render_started_at is not None and timings.render_finished_at is not None
    assert timings.received_at <= timings.render_started_at <= timings.render_finished_at <= timings.completed_at
    assert timings.render_ms is not None and timings.encode_ms is not None and timings.upload_ms is not None

    records = await kafka.records_for(settings.results_topic, [body["request_id"]])
    headers = dict(records[0].headers)
    assert headers["traceparent"].startswith(b"00-0af7651916cd43dd8448eb211c80319c-")  # same trace continues


@pytest.mark.timeout(120)
async def test_image_to_video_from_s3_and_cache_hit_for_identical_request(
    module_settings: Settings, module_kafka: KafkaClient, module_store: ObjectStore, module_worker: Any
) -> None:
    settings, kafka, store, worker = module_settings, module_kafka, module_store, module_worker
    shoe = product_image(320, 200)
    key = upload_key(shoe, "shoe.png", prefix=settings.s3_key_prefix, tenant_id="shop-1")
    await store.put(key, shoe, content_type="image/png", metadata={})
    first = request_body(image_url=f"s3://{settings.s3_bucket}/{key}", width=320, height=256)
    second = {**first, "request_id": first["request_id"] + "-again", "metadata": {"retry": "1"}}
    await kafka.send(first)
    await kafka.results_for(first["request_id"])
    await kafka.send(second)
    results = await kafka.results_for(first["request_id"], second["request_id"])

    one, two = results[first["request_id"]], results[second["request_id"]]
    assert one.status == two.status == "completed"
    assert one.video is not None and two.video is not None
    assert (one.cache_hit, two.cache_hit) == (False, True)
    assert two.video.uri == one.video.uri and two.video.sha256 == one.video.sha256
    assert two.timings.render_ms is None  # nothing rendered the second time
    assert two.metadata == {"retry": "1"}
    assert sum(1 for event in worker.progress if event[0] == second["request_id"]) == 0
    assert [step for rid, step, _ in worker.progress if rid == first["request_id"]] == [1, 2]
    _, width, height, _ = _decode(await _fetch(one.video.url))
    assert (width, height) == (320, 256)


async def test_bad_requests_are_rejected_or_dead_lettered_and_the_partition_moves_on(
    settings: Settings, kafka: KafkaClient, start_worker
) -> None:
    await start_worker(settings)
    key = b"same-partition"  # every record on one partition: the bad ones must not block the good one
    await kafka.send(b"\xff\xfe not utf-8", key=key)
    await kafka.send(b"[1, 2, 3]", key=key, headers=[("origin", b"test")])
    await kafka.send(json.dumps({"prompt": "no id"}).encode(), key=key)
    await kafka.send(json.dumps(request_body("bad-width", width=500)).encode(), key=key)
    await kafka.send(json.dumps(request_body("unknown-field", colour="red")).encode(), key=key)
    await kafka.send(json.dumps(request_body("no-prompt", prompt="   ")).encode(), key=key)
    await kafka.send(json.dumps(request_body("bad-bucket", image_url="s3://elsewhere/x.png")).encode(), key=key)
    await kafka.send(json.dumps(request_body("good")).encode(), key=key)

    results = await kafka.results(5)
    assert results["good"].status == "completed"
    width = results["bad-width"]
    assert (width.status, width.error and width.error.code) == ("rejected", "invalid_field")
    assert width.error is not None and width.error.field == "width" and "multiple of 16" in width.error.message
    assert width.error.retryable is False
    unknown = results["unknown-field"].error
    assert unknown is not None and (unknown.code, unknown.field) == ("unknown_field", "colour")
    prompt = results["no-prompt"].error
    assert prompt is not None and (prompt.code, prompt.field) == ("invalid_field", "prompt")
    bucket = results["bad-bucket"]
    assert bucket.status == "rejected" and bucket.error is not None
    assert bucket.error.code == "image_url_forbidden"

    dead = await kafka.read(settings.dlq_topic, 3)
    codes = [dict(record.headers)["vidgen-error-code"] for record in dead]
    assert codes == [b"not_utf8", b"not_json_object", b"missing_request_id"]
    assert dead[1].value == b"[1, 2, 3]" and dead[1].key == key
    assert dict(dead[1].headers)["origin"] == b"test"  # original headers kept
    assert dict(dead[1].headers)["vidgen-original-topic"] == settings.requests_topic.encode()

    assert await kafka.wait_committed(8) == 8  # everything answered was committed


async def test_health_readiness_and_metrics_over_http(settings: Settings, kafka: KafkaClient, start_worker) -> None:
    worker = await start_worker(settings)
    await kafka.send(request_body("metrics-1"))
    await kafka.results(1)
    base = f"http://127.0.0.1:{worker.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with http.get(f"{base}/readyz") as response:
            body = await response.json()
            assert response.status == 200, body
            assert body["checks"] == {"model": "ok", "consumer_group": "ok", "s3": "ok"}
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
    assert 'vidgen_jobs_total{error_code="",status="completed"} 1.0' in text
    assert "vidgen_render_seconds_bucket" in text


async def test_worker_drains_and_exits_zero_on_stop(settings: Settings, kafka: KafkaClient, start_worker) -> None:
    worker = await start_worker(settings)
    await kafka.send(request_body("before-stop"))
    await kafka.results(1)
    assert await worker.shutdown() == 0
    assert sum(offset or 0 for offset in (await kafka.committed()).values()) == 1


async def test_banned_terms_are_rejected_with_content_policy(module_kafka: KafkaClient, module_worker: Any) -> None:
    kafka = module_kafka  # the module worker's banned terms: MODULE_WORKER_OVERRIDES
    await kafka.send(request_body("policy-1", prompt="A FAKE   Rolex on a wrist"))
    await kafka.send(request_body("policy-2", prompt="Counterfeits of a handbag"))
    await kafka.send(request_body("policy-ok", prompt="a genuine leather handbag"))
    results = await kafka.results_for("policy-1", "policy-2", "policy-ok")
    for request_id in ("policy-1", "policy-2"):
        error = results[request_id].error
        assert results[request_id].status == "rejected" and error is not None
        assert (error.code, error.field, error.retryable) == ("content_policy", "prompt", False)
        assert "rolex" not in error.message.lower()  # the list is not revealed one probe at a time
    assert results["policy-ok"].status == "completed"


async def test_control_characters_are_stripped_and_disguised_text_is_rejected(
    module_kafka: KafkaClient, module_worker: Any
) -> None:
    kafka = module_kafka
    await kafka.send(request_body("ctl-1", prompt="a red\x1b[31m shoe\x07"))
    await kafka.send(request_body("bidi-1", prompt="a shoe \u202egnp.exe"))
    results = await kafka.results_for("ctl-1", "bidi-1")
    assert results["ctl-1"].status == "completed"
    bidi = results["bidi-1"].error
    assert bidi is not None and (bidi.code, bidi.field) == ("invalid_field", "prompt") and "U+202E" in bidi.message


@pytest.mark.timeout(120)
async def test_a_tenant_over_its_quota_does_not_starve_another(
    settings: Settings, kafka: KafkaClient, start_worker, make_renderer
) -> None:
    # The stand-in renders (a second each, no model): the quota's scheduling is the point, and seven tiny-model
    # renders cost fourteen seconds of CPU.
    quota = settings.model_copy(update={"tenant_max_inflight": 1, "max_inflight_jobs": 2, "model": "standin"})
    await start_worker(quota, renderer=make_renderer(StandInPipeline(1.0)))
    key = "one-partition"
    for index in range(6):
        # Distinct prompts: identical requests would be instant cache hits and prove nothing.
        await kafka.send(request_body(f"busy-{index}", tenant_id="busy-shop", prompt=f"shoe {index}"), key=key)
    await kafka.send(request_body("quiet-0", tenant_id="quiet-shop"), key=key)
    records = await kafka.read(settings.results_topic, 7)
    order = [record.key.decode() for record in records]
    assert all(VideoResult.model_validate_json(r.value).status == "completed" for r in records)
    assert order.index("quiet-0") <= 2, order  # not behind the busy tenant's backlog
