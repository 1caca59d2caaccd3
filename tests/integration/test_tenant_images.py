"""A tenant reads only its own start images, end to end: another tenant's uploads, posters and videos answer exactly
like a missing key, shared image buckets serve every tenant, and the demo uploads into its tenant's folder."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumer.dev.demo import _demo, product_image
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings
from producer_examples import command_line, publish_request
from schemas.events import VideoRequest, VideoResult
from tests.support import KafkaClient, request_body

# ---------------------------------------------------------------------- real worker, real S3 server, real CLI

SMALL_CLI = ["--width", "256", "--height", "256", "--frames", "5", "--steps", "2"]


async def _upload_as(tenant: str, image: Path, settings: Settings, kafka: KafkaClient, count: int) -> VideoRequest:
    """`vidgen submit --image` as `tenant`, the real upload side; answers the request it published (the
    `count`-th on the requests topic)."""
    argv = ["--prompt", "a red sneaker", "--image", str(image), "--tenant", tenant, *SMALL_CLI]
    assert await asyncio.to_thread(publish_request.main, argv, settings=settings) == command_line.EXIT_COMPLETED
    records = await kafka.read(settings.requests_topic, count)
    requests = [VideoRequest.model_validate_json(record.value) for record in records]
    [mine] = [request for request in requests if request.tenant_id == tenant]
    return mine


def _answer(result: VideoResult) -> tuple[str, str | None, str | None, bool | None, str | None]:
    error = result.error
    return (result.status, *((error.code, error.message, error.retryable, error.field) if error else (None,) * 4))


@pytest.mark.timeout(180)
async def test_another_tenants_uploads_posters_and_videos_answer_exactly_like_a_missing_key(
    settings: Settings, kafka: KafkaClient, start_worker: Any, tmp_path: Path, caplog: Any
) -> None:
    settings = settings.model_copy(update={"s3_key_prefix": "pfx/"})
    await start_worker(settings)
    bucket = settings.s3_bucket
    (tmp_path / "a.png").write_bytes(product_image(256, 256))
    (tmp_path / "b.png").write_bytes(product_image(320, 256))

    mine_a = await _upload_as("shop-a", tmp_path / "a.png", settings, kafka, 1)
    assert mine_a.image_url is not None
    [result_a] = (await kafka.results(1)).values()
    assert result_a.status == "completed", result_a.error  # A reads its own upload
    assert result_a.video is not None
    mine_b = await _upload_as("shop-b", tmp_path / "b.png", settings, kafka, 2)
    assert mine_b.image_url is not None
    a_key = mine_a.image_url.removeprefix(f"s3://{bucket}/")
    b_dir = mine_b.image_url.removeprefix(f"s3://{bucket}/").rsplit("/", 1)[0]
    escape = "/".join([".."] * (b_dir.count("/") + 1))
    probes = {
        "missing-own": f"s3://{bucket}/{b_dir}/{'0' * 32}.png",  # the reference answer: B's own folder, no object
        "a-upload": mine_a.image_url,
        "a-poster": result_a.video.poster_uri,
        "a-video": result_a.video.uri,
        "missing-elsewhere": f"s3://{bucket}/{settings.s3_key_prefix}uploads/never-uploaded.png",
        "dot-dot": f"s3://{bucket}/{b_dir}/{escape}/{a_key}",
        "double-slash": f"s3://{bucket}//{a_key}",
        "percent": f"s3://{bucket}/{b_dir}/%2e%2e/{a_key.rsplit('/', 1)[1]}",
    }
    caplog.set_level(logging.INFO)
    caplog.clear()
    for name, url in probes.items():
        await kafka.send(request_body(f"b-{name}", tenant_id="shop-b", image_url=url))
    results = await kafka.results(2 + len(probes))

    assert results[mine_b.request_id].status == "completed"  # B reads its own upload
    answers = {name: _answer(results[f"b-{name}"]) for name in probes}
    reference = answers["missing-own"]
    assert reference[:2] == ("rejected", "image_not_found") and reference[3] is False
    assert {name: answer for name, answer in answers.items() if answer != reference} == {}
    message = reference[2] or ""
    assert not [word for word in ("uploads", "videos", "pfx/", "0000", b_dir) if word in message], message
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("consumer"))
    assert not [word for word in (a_key, "never-uploaded", "%2e", "0000") if word in ours], ours
    # The S3 server's own access log: only the probe inside B's folder reached it.
    s3_log = "\n".join(record.getMessage() for record in caplog.records if record.name == "werkzeug")
    assert f"GET /{bucket}/{b_dir}/{'0' * 32}.png" in s3_log
    touched = [name for name, url in probes.items() if name != "missing-own" and url.rsplit("/", 1)[1] in s3_log]
    assert touched == [], s3_log


@pytest.mark.timeout(120)
async def test_a_shared_image_bucket_serves_every_tenant(
    settings: Settings, kafka: KafkaClient, start_worker: Any
) -> None:
    shared = f"shared-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"s3_image_buckets": (shared,)})
    async with open_s3_client(settings) as client:
        catalog = ObjectStore(client, bucket=shared, presign_ttl_s=60)
        await catalog.ensure_bucket()
        await catalog.put("catalog/shoe.png", product_image(256, 256), content_type="image/png", metadata={})
    await start_worker(settings)
    url = f"s3://{shared}/catalog/shoe.png"
    for tenant in ("shop-a", "shop-b"):
        await kafka.send(request_body(f"{tenant}-shared", tenant_id=tenant, image_url=url))
    results = await kafka.results(2)
    assert {rid: r.status for rid, r in results.items()} == {"shop-a-shared": "completed", "shop-b-shared": "completed"}


@pytest.mark.timeout(240)
async def test_the_demo_uploads_into_its_tenants_folder_and_completes(settings: Settings, tmp_path: Path) -> None:
    assert await _demo(settings.model_copy(update={"s3_key_prefix": "demo-env/"}), tmp_path) == 0
    saved = await asyncio.to_thread(lambda: sorted(path.suffix for path in tmp_path.iterdir()))
    assert saved == [".jpeg", ".jpeg", ".mp4", ".mp4"]  # the model's video and the template renderer's
