"""`vidgen demo`: the whole path on one machine with nothing running beforehand.

Embedded broker and S3 server (unless VIDGEN_KAFKA_BOOTSTRAP_SERVERS / VIDGEN_S3_ENDPOINT_URL point elsewhere),
a worker with the tiny model and a template worker beside it (the template pool of graceful degradation), one
"product created" request with a generated product image to each, the result events, and both MP4s and posters
saved under ./demo-output/: the model's video and the template renderer's (`degraded: true`) of the same photo.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from PIL import Image, ImageDraw

from consumer.core.keys import upload_key
from consumer.dev.embedded import kafka_broker, s3_server
from consumer.errors import VidgenError
from consumer.kafka.clients import client_options, ensure_topics, worker_topics
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings
from consumer.start_failures import explain
from consumer.worker.wiring import serve
from schemas.events import VideoRequest, VideoResult

__all__ = ["EmbeddedStack", "embedded_services", "run_demo"]

_RESULT_TIMEOUT_S = 240.0


def product_image(width: int = 512, height: int = 512) -> bytes:
    """A synthetic product shot: a sneaker-ish shape on a studio gradient."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = 235 - y * 60 // height
        draw.line([(0, y), (width, y)], fill=(shade, shade, shade + 10))
    w, h = width, height
    draw.ellipse([w * 0.15, h * 0.62, w * 0.85, h * 0.72], fill=(170, 170, 175))  # shadow
    draw.rounded_rectangle([w * 0.18, h * 0.45, w * 0.82, h * 0.64], radius=int(h * 0.06), fill=(200, 40, 40))
    draw.rounded_rectangle([w * 0.22, h * 0.33, w * 0.52, h * 0.52], radius=int(h * 0.05), fill=(200, 40, 40))
    draw.rectangle([w * 0.18, h * 0.6, w * 0.82, h * 0.65], fill=(245, 245, 245))  # sole
    for i in range(4):
        x = w * (0.3 + 0.05 * i)
        draw.line([(x, h * 0.38), (x + w * 0.04, h * 0.46)], fill=(250, 250, 250), width=max(2, w // 100))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class EmbeddedStack:
    """The settings pointed at the embedded services, and the variables that attach another process (`vidgen run`,
    `vidgen submit`) to them: the broker's and the S3 server's addresses, and the dummy credentials the embedded S3
    server accepts where the demo set them itself (real credentials are never repeated)."""

    settings: Settings
    attach: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def embedded_services(settings: Settings) -> Iterator[EmbeddedStack]:
    """Start what the environment does not provide, and point the settings at it."""
    with contextlib.ExitStack() as stack:
        update: dict[str, object] = {"s3_create_bucket": True}
        attach: dict[str, str] = {}
        if "kafka_bootstrap_servers" not in settings.model_fields_set:
            update["kafka_bootstrap_servers"] = stack.enter_context(kafka_broker())
            update["kafka_enable_idempotence"] = False  # the embedded broker has no idempotent producer
            _say("started embedded Kafka-protocol broker (tansu) on " + str(update["kafka_bootstrap_servers"]))
            attach["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"] = str(update["kafka_bootstrap_servers"])
            attach["VIDGEN_KAFKA_ENABLE_IDEMPOTENCE"] = "false"
        if "s3_endpoint_url" not in settings.model_fields_set:
            update["s3_endpoint_url"] = stack.enter_context(s3_server())
            attach["VIDGEN_S3_ENDPOINT_URL"] = str(update["s3_endpoint_url"])
            # The embedded server accepts any credentials; real ones still win when set.
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                if name not in os.environ:
                    os.environ[name] = attach[name] = "demo"
            _say(f"started embedded S3 server (moto) on {update['s3_endpoint_url']}")
        if "http_port" not in settings.model_fields_set:
            update["http_port"] = 0
        if "model" not in settings.model_fields_set:
            update["model"] = "tiny"
        yield EmbeddedStack(settings.model_copy(update=update), attach)


def run_demo(settings: Settings, output_dir: Path) -> int:
    """Exit 0 with both videos saved, 1 when a request or a service failed (one line saying which, and the fix)."""
    started = time.monotonic()
    with embedded_services(settings) as stack:
        try:
            code = asyncio.run(_demo(stack.settings, output_dir))
        except (VidgenError, KafkaError, OSError, aiohttp.ClientError) as exc:
            _say(f"stopped: {explain(exc, bootstrap_servers=stack.settings.kafka_bootstrap_servers)}")
            code = 1
    _say(f"done in {time.monotonic() - started:.1f}s; everything shut down")
    return code


async def _demo(settings: Settings, output_dir: Path) -> int:
    stop = asyncio.Event()
    template = settings.template_pool().model_copy(update={"http_port": 0})  # its probes beside the first worker's
    workers = [
        asyncio.create_task(serve(settings, stop, on_progress=_show_progress)),
        asyncio.create_task(serve(template, stop)),
    ]
    try:
        requests = await _submit(settings, template)
        results = await _await_results(settings, [request.request_id for request in requests], workers)
        for result in results:
            print(json.dumps(result.model_dump(mode="json"), indent=2))
        for result in results:
            if result.video is None:
                _say(f"request {result.request_id} ended {result.status}: {result.error}")
                return 1
            await _download(result, output_dir)
        _say(f"in {output_dir}: the {settings.model} model's video and the template renderer's (degraded: true)")
        return 0
    finally:
        stop.set()
        await asyncio.gather(*workers)


async def _submit(settings: Settings, template: Settings) -> list[VideoRequest]:
    """The same product request to the worker's topic and to the template pool's."""
    await ensure_topics(settings, sorted({*worker_topics(settings), *worker_topics(template)}))
    tenant_id = "demo-shop"
    image = product_image()
    image_key = upload_key(image, "product.png", prefix=settings.s3_key_prefix, tenant_id=tenant_id)
    async with open_s3_client(settings) as s3:
        store = ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        await store.ensure_bucket()
        await store.put(image_key, image, content_type="image/png", metadata={})
    request_id = f"demo-{uuid.uuid4().hex[:12]}"
    request = VideoRequest(
        request_id=request_id,
        tenant_id=tenant_id,
        prompt="A red sneaker slowly turning on a white studio table, soft light, product shot",
        negative_prompt="blurry, low quality, text, watermark",
        image_url=f"s3://{settings.s3_bucket}/{image_key}",
        width=384,
        height=256,
        num_frames=13,
        num_inference_steps=8,
        fps=8,
        metadata={"product_id": "sku-1234", "source": "vidgen-demo"},
    )
    degraded = request.model_copy(update={"request_id": f"{request_id}-template"})
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        for each, topic in ((request, settings.requests_topic), (degraded, template.requests_topic)):
            value = each.model_dump_json(exclude_none=True).encode()
            await producer.send_and_wait(topic, key=each.request_id.encode(), value=value)
            _say(f"published request {each.request_id} to {topic}")
    finally:
        await producer.stop()
    _say("waiting for the results")
    return [request, degraded]


async def _await_results(
    settings: Settings, request_ids: list[str], workers: list[asyncio.Task[int]]
) -> list[VideoResult]:
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        deadline = time.monotonic() + _RESULT_TIMEOUT_S
        await consumer.topics()  # refreshes metadata, so the results topic's partitions are known
        partitions = consumer.partitions_for_topic(settings.results_topic) or set()
        consumer.assign([TopicPartition(settings.results_topic, p) for p in partitions])
        found: dict[str, VideoResult] = {}
        while time.monotonic() < deadline:
            for worker in workers:
                if worker.done():
                    raise RuntimeError(f"a worker stopped early (exit code {worker.result()})")
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    key = record.key.decode() if record.key is not None else ""
                    if key in request_ids and key not in found:
                        found[key] = VideoResult.model_validate_json(record.value)
            if len(found) == len(request_ids):
                return [found[request_id] for request_id in request_ids]
        missing = ", ".join(request_id for request_id in request_ids if request_id not in found)
        raise TimeoutError(f"no result for {missing} after {_RESULT_TIMEOUT_S:.0f}s")
    finally:
        await consumer.stop()


async def _download(result: VideoResult, output_dir: Path) -> None:
    """Fetch through the presigned URLs, exactly as a downstream consumer would."""
    if result.video is None:
        raise ValueError("only completed results have files")
    await asyncio.to_thread(output_dir.mkdir, parents=True, exist_ok=True)
    poster_ext = result.video.poster_uri.rsplit(".", 1)[-1]
    targets = {
        output_dir / f"{result.request_id}.mp4": result.video.url,
        output_dir / f"{result.request_id}.poster.{poster_ext}": result.video.poster_url,
    }
    async with aiohttp.ClientSession() as http:
        for path, url in targets.items():
            async with http.get(url) as response:
                response.raise_for_status()
                path.write_bytes(await response.read())
            _say(f"saved {path} ({path.stat().st_size} bytes)")


def _show_progress(request_id: str, step: int, total: int) -> None:
    width = 30
    filled = width * step // total
    end = "\n" if step == total else ""
    sys.stderr.write(f"\r  rendering {request_id} [{'#' * filled}{'.' * (width - filled)}] {step}/{total}{end}")
    sys.stderr.flush()


def _say(message: str) -> None:
    print(f"vidgen demo: {message}", file=sys.stderr)
