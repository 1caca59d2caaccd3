"""The template pool against the real broker and S3 server: a worker with `VIDGEN_MODEL=template` (no diffusion
model) on a requests topic and consumer group of its own answers like any worker, with `model: "template"` and
`degraded: true`, and a template video never answers a request for the real model (nor the other way round)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from PIL import Image

from bench import template_e2e
from bench.infra import Infra
from consumer.core.keys import upload_key
from consumer.dev.demo import product_image
from consumer.images.decoding import fit_image
from consumer.kafka.clients import ensure_topics, worker_topics
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from tests.support import KafkaClient, request_body, template_renderer


async def _fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.read()


def _frames(mp4: bytes) -> np.ndarray[Any, np.dtype[np.uint8]]:
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _psnr(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


async def test_a_template_worker_answers_with_a_degraded_ken_burns_video(
    settings: Settings, store: ObjectStore, start_worker
) -> None:
    pool = settings.template_pool()
    renderer = template_renderer()
    try:
        await start_worker(pool, renderer=renderer)
        shoe = product_image(640, 480)
        key = upload_key(shoe, "shoe.png", prefix=settings.s3_key_prefix, tenant_id="shop-1")
        await store.put(key, shoe, content_type="image/png", metadata={})
        body = request_body(image_url=f"s3://{settings.s3_bucket}/{key}", num_frames=9, num_inference_steps=30)
        client = KafkaClient(pool)
        await client.start()
        try:
            await client.send(body)
            result = (await client.results(1))[body["request_id"]]
        finally:
            await client.stop()
    finally:
        renderer.close()

    assert result.status == "completed", result.error
    assert (result.model, result.degraded, result.cache_hit) == ("template", True, False)
    assert result.memory_mode is None  # no model, no memory modes
    assert result.video is not None
    frames = _frames(await _fetch(result.video.url))
    assert frames.shape == (9, 256, 256, 3)
    start = np.asarray(fit_image(Image.open(io.BytesIO(shoe)).convert("RGB"), 256, 256))
    assert _psnr(frames[0], start) > 30  # the first frame is the start image's centred crop
    assert all(np.abs(frames[i].astype(int) - frames[i - 1]).mean() > 0.1 for i in range(1, 9))  # it moves


async def test_template_and_model_videos_never_answer_each_other(
    settings: Settings, kafka: KafkaClient, start_worker
) -> None:
    """Identical content on both pools: each pool renders its own video once and answers repeats from its own
    cache, never from the other's (the model is part of the cache key)."""
    pool = settings.template_pool()
    await ensure_topics(pool, worker_topics(pool))
    renderer = template_renderer()
    template_client = KafkaClient(pool)
    await template_client.start()
    try:
        await start_worker(pool, renderer=renderer)
        await start_worker(settings)
        same = request_body(prompt="a blue mug on a wooden shelf")
        ids = {name: f"{same['request_id']}-{name}" for name in ("template-1", "tiny-1", "template-2", "tiny-2")}
        results = {}
        for count, (name, request_id) in enumerate(ids.items(), start=1):
            client = template_client if name.startswith("template") else kafka
            await client.send({**same, "request_id": request_id})
            results[name] = (await kafka.results(count))[request_id]  # one at a time: each sees the last's upload
    finally:
        await template_client.stop()
        renderer.close()

    for name, result in results.items():
        assert result.status == "completed", (name, result.error)
        assert result.model == ("template" if name.startswith("template") else "tiny")
        assert result.degraded is name.startswith("template")
    assert (results["template-1"].cache_hit, results["tiny-1"].cache_hit) == (False, False)
    assert (results["template-2"].cache_hit, results["tiny-2"].cache_hit) == (True, True)
    uris = {name: result.video.uri for name, result in results.items() if result.video is not None}
    assert uris["template-1"] == uris["template-2"] != uris["tiny-1"] == uris["tiny-2"]


@pytest.mark.timeout(180)
async def test_the_end_to_end_benchmark_runs_tiny_and_reports_its_shape(
    broker: str, s3_endpoint: str, tmp_path: Path
) -> None:
    """bench/template_e2e.py with a worker process, tiny: every answer a degraded completion, the figures there."""
    report = await template_e2e.measure(Infra(broker, s3_endpoint, tmp_path), count=2, size=(256, 256, 5))
    for phase in ("sequential", "burst"):
        assert report[phase]["count"] == report[phase]["degraded_completed"] == 2
        assert 0 < report[phase]["p50_s"] <= report[phase]["p95_s"] <= report[phase]["max_s"]
        assert report[phase]["render_ms_p50"] is not None
    assert report["burst"]["videos_per_s"] > 0
