"""Helpers every tier shares: request bodies, waiting on conditions, a Kafka client as other teams would write one,
small named failure modes around the tiny pipeline, a throwaway CA for HTTPS on loopback, and fakes of the worker's
edges (a Kafka consumer, a publisher, a job pipeline) for unit tests of the loop's decisions."""

from __future__ import annotations

import asyncio
import io
import json
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import trustme
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from PIL import Image

from consumer.core.results import Identity, completed, failed, not_started
from consumer.errors import PublishRefused, VidgenError
from consumer.images.sandbox import DecodeLimits
from consumer.kafka.clients import client_options
from consumer.settings import Settings
from schemas.events import VideoInfo, VideoProgress, VideoRequest, VideoResult

if TYPE_CHECKING:
    from consumer.render.renderer import Renderer

# torch, diffusers and the renderer are imported by the helpers that need them, never at import: the unit tier
# imports this module and loads no torch unless a test needs it (tests/unit/test_tier_imports.py).

_T = TypeVar("_T")

REPO = Path(__file__).resolve().parents[1]

# Small enough that a render takes about a second on a 2-core CPU.
SMALL = {"width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2}


def request_body(request_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id or f"req-{uuid.uuid4().hex[:10]}",
        "tenant_id": "shop-1",
        "prompt": "a red sneaker on a white table",
        **SMALL,
    }
    body.update(overrides)
    return body


def product_payload(product_id: str = "p-1", **overrides: Any) -> dict[str, Any]:
    """A shop platform's "product created" webhook body."""
    return {
        "product_id": product_id,
        "shop_id": "shop-1",
        "title": "Red sneaker",
        "description": "Breathable mesh, white sole.",
        **overrides,
    }


DEFAULT_DECODE_LIMITS = DecodeLimits(
    max_pixels=Settings.model_fields["image_max_pixels"].default,
    max_decoded_bytes=Settings.model_fields["image_max_decoded_bytes"].default,
    memory_bytes=Settings.model_fields["image_decode_memory_bytes"].default,
    cpu_s=Settings.model_fields["image_decode_cpu_s"].default,
)


def encoded(image: Image.Image, fmt: str, **options: Any) -> bytes:
    """`image` as a file of format `fmt` (Pillow's name: "PNG", "JPEG"...)."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# --- Waiting on conditions ------------------------------------------------------------------------------------


async def until(predicate: Callable[[], Awaitable[_T]], *, timeout_s: float = 30, every_s: float = 0.2) -> _T:
    """The first truthy value of `predicate`, polled: for state only another component (a worker, a broker) holds."""
    async with asyncio.timeout(timeout_s):
        while not (value := await predicate()):  # noqa: ASYNC110 - watching another component's state
            await asyncio.sleep(every_s)
        return value


async def condition(check: Callable[[], bool], *, timeout_s: float = 10) -> None:
    """Until `check()` holds, giving the event loop a turn between looks: for state of this process's own tasks."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - other tasks of this loop move the state
            await asyncio.sleep(0.005)


async def http_get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def metric(port: int, name: str) -> float:
    """A sample of the worker's /metrics page (0 when absent)."""
    _, text = await http_get(port, "/metrics")
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def ready(port: int) -> bool:
    return (await http_get(port, "/readyz"))[0] == 200


# --- A Kafka client as an upstream or downstream team would use ----------------------------------------------


class KafkaClient:
    """A plain producer and an assign()-based reader."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(**client_options(settings))

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(
        self,
        value: bytes | dict[str, Any] | None,
        *,
        key: str | bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        if isinstance(value, dict):
            key = key if key is not None else value.get("request_id")
            value = json.dumps(value).encode()
        if isinstance(key, str):
            key = key.encode()
        await self.producer.send_and_wait(self.settings.requests_topic, value=value, key=key, headers=headers or [])

    async def read(self, topic: str, count: int, *, timeout_s: float = 90) -> list[Any]:
        """The first `count` records of a topic, across its partitions."""
        return await self._collect(topic, lambda records: len(records) >= count, timeout_s=timeout_s)

    async def _collect(
        self,
        topic: str,
        enough: Callable[[list[Any]], bool],
        *,
        keep: Callable[[Any], bool] = lambda _: True,
        timeout_s: float,
    ) -> list[Any]:
        """The records of a topic that `keep` accepts, from the start, read until they are `enough`."""
        consumer = AIOKafkaConsumer(**client_options(self.settings), auto_offset_reset="earliest")
        await consumer.start()
        try:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            records: list[Any] = []
            async with asyncio.timeout(timeout_s):
                while not enough(records):
                    batch = await consumer.getmany(timeout_ms=200)
                    for part in batch.values():
                        records.extend(record for record in part if keep(record))
            return records
        finally:
            await consumer.stop()

    async def read_to_end(self, topic: str, *, timeout_s: float = 30) -> tuple[list[Any], dict[int, int]]:
        """Every record of a topic and each partition's end offset, read until the high watermark a fetch reports
        (tansu answers ListOffsets with wrong offsets once records were produced in batches)."""
        consumer = AIOKafkaConsumer(**client_options(self.settings), auto_offset_reset="earliest")
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
            consumer.assign(partitions)
            records: list[Any] = []
            ends: dict[int, int] = {}
            async with asyncio.timeout(timeout_s):
                while len(ends) < len(partitions):
                    for part in (await consumer.getmany(timeout_ms=200)).values():
                        records.extend(part)
                    for tp in partitions:
                        end = consumer.highwater(tp)
                        if end is not None and await consumer.position(tp) >= end:
                            ends[tp.partition] = end
            return records, ends
        finally:
            await consumer.stop()

    async def results(self, count: int, *, timeout_s: float = 90) -> dict[str, VideoResult]:
        records = await self.read(self.settings.results_topic, count, timeout_s=timeout_s)
        return {r.key.decode(): VideoResult.model_validate_json(r.value) for r in records}

    async def records_for(self, topic: str, keys: Iterable[str | bytes], *, timeout_s: float = 90) -> list[Any]:
        """The records of `topic` with one of `keys`, once each key has one: for tests sharing topics (a module
        worker's), which see only their own requests' records."""
        wanted = {key.encode() if isinstance(key, str) else key for key in keys}
        return await self._collect(
            topic,
            lambda records: wanted <= {record.key for record in records},
            keep=lambda record: record.key in wanted,
            timeout_s=timeout_s,
        )

    async def denoising(self, request_id: str) -> bool:
        """Whether the request's render has done a step (its progress events say). `vidgen_inflight_jobs` counts a
        job still downloading its image or waiting for memory too, which a SIGTERM drain hands back unrendered."""
        records, _ = await self.read_to_end(self.settings.progress_topic)
        return any(
            record.key == request_id.encode() and VideoProgress.model_validate_json(record.value).step >= 1
            for record in records
        )

    async def results_for(self, *request_ids: str, timeout_s: float = 90) -> dict[str, VideoResult]:
        """The first result of each of `request_ids` (results of other requests on the topic are skipped)."""
        first: dict[str, VideoResult] = {}
        for record in await self.records_for(self.settings.results_topic, request_ids, timeout_s=timeout_s):
            first.setdefault(record.key.decode(), VideoResult.model_validate_json(record.value))
        return first

    async def wait_committed(self, total: int, *, timeout_s: float = 30) -> int:
        """Sum of the group's committed offsets once it reaches `total` (commits follow results closely)."""

        async def reached() -> int:
            seen = sum(offset or 0 for offset in (await self.committed()).values())
            return seen if seen >= total else 0

        return await until(reached, timeout_s=timeout_s)

    async def committed(self) -> dict[int, int | None]:
        consumer = AIOKafkaConsumer(**client_options(self.settings), group_id=self.settings.consumer_group)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(self.settings.requests_topic) or set()
            return {p: await consumer.committed(TopicPartition(self.settings.requests_topic, p)) for p in partitions}
        finally:
            await consumer.stop()


# --- Failure modes around the real tiny pipeline (like cog's failing predictors) -----------------------------


def _tiny_pipeline() -> Any:
    from consumer.render.tiny import build_tiny_pipeline

    return build_tiny_pipeline()


class _Wrapped:
    """Everything but the call is the inner tiny pipeline's, so memory profiling and admission see a real model."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SlowPipeline(_Wrapped):
    """The tiny pipeline, with each denoising step held for `step_s` seconds: a long render in miniature."""

    def __init__(self, step_s: float) -> None:
        self._inner = _tiny_pipeline()
        self._step_s = step_s

    def __call__(self, **kwargs: Any) -> Any:
        callback = kwargs["callback_on_step_end"]

        def slow_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            time.sleep(self._step_s)
            return callback(pipe, step, timestep, tensors)  # type: ignore[no-any-return]

        return self._inner(**{**kwargs, "callback_on_step_end": slow_step})


class CrashingPipeline(_Wrapped):
    """Raises for prompts containing `crash` (a plain bug) or `cuda` (a device error that breaks the process)."""

    def __init__(self) -> None:
        self._inner = _tiny_pipeline()

    def __call__(self, **kwargs: Any) -> Any:
        prompt = kwargs["prompt"]
        if "cuda" in prompt:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if "crash" in prompt:
            raise ValueError("shapes do not match")
        return self._inner(**kwargs)


# --- HTTPS on loopback -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def loopback_tls(*names: str) -> Tls:
    """A certificate for `names` (hostnames or IP addresses) signed by a new CA that only `client` trusts."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(server, client)


# --- Fakes of the worker's edges, for unit tests -----------------------------------------------------------


def consumed(
    topic: str,
    partition: int,
    offset: int,
    value: bytes | dict[str, Any] | None,
    *,
    headers: Iterable[tuple[str, bytes]] = (),
    key: bytes | None = None,
) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it out."""
    if isinstance(value, dict):
        key = key if key is not None else str(value.get("request_id", "")).encode()
        value = json.dumps(value).encode()
    size = len(value or b"")
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, len(key or b""), size, list(headers))


class FakeConsumer:
    """The part of `AIOKafkaConsumer` the consume loop uses, over fixed partitions: assigned at `start`, records
    handed out from each partition's position (none from paused ones), commits recorded. `getmany` waits a little
    when it has nothing, as a broker's fetch would."""

    def __init__(self, listener: Any, records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.listener = listener
        self.records = records
        self.positions = dict.fromkeys(records, 0)
        self.fetched: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self.commits: list[dict[TopicPartition, int]] = []
        self.stopped = False

    async def start(self) -> None:
        await self.listener.on_partitions_assigned(set(self.records))

    async def stop(self) -> None:
        self.stopped = True

    def assignment(self) -> set[TopicPartition]:
        return set(self.records)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        batch: dict[TopicPartition, list[Any]] = {}
        for tp in sorted(set(self.records) - self._paused):
            self.fetched.add(tp)
            taken = self.records[tp][self.positions[tp] :][: max_records - sum(map(len, batch.values()))]
            if taken:
                batch[tp] = taken
                self.positions[tp] += len(taken)
        if not batch:
            await asyncio.sleep(min(timeout_ms, 5) / 1000)
        return batch

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self.records[tp]) if tp in self.fetched else None

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def topics(self) -> set[str]:
        return {tp.topic for tp in self.records}

    def committed(self) -> dict[TopicPartition, int]:
        """The last offset committed per partition."""
        last: dict[TopicPartition, int] = {}
        for commit in self.commits:
            last.update(commit)
        return last


@dataclass
class FakePublisher:
    """Records what the worker publishes. `refuse_retry` makes the retry topic refuse copies for good."""

    refuse_retry: bool = False
    results: list[VideoResult] = field(default_factory=list)
    dead_letters: list[tuple[ConsumerRecord[bytes, bytes], str]] = field(default_factory=list)
    retries: list[tuple[ConsumerRecord[bytes, bytes], list[tuple[str, bytes]]]] = field(default_factory=list)

    async def result(self, result: VideoResult) -> None:
        self.results.append(result)

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], *, code: str, message: str) -> None:
        self.dead_letters.append((record, code))

    async def retry_later(self, record: ConsumerRecord[bytes, bytes], *, headers: list[tuple[str, bytes]]) -> None:
        if self.refuse_retry:
            raise PublishRefused("video.requests.retry refused the record")
        self.retries.append((record, headers))


IDENTITY = Identity(worker_id="w1", model="tiny")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def video_info() -> VideoInfo:
    return VideoInfo(
        uri="s3://b/v.mp4",
        url="https://s3.example/v.mp4",
        url_expires_at=NOW + timedelta(hours=1),
        poster_uri="s3://b/v.poster.jpeg",
        poster_url="https://s3.example/v.poster.jpeg",
        bytes=1,
        sha256="0" * 64,
        width=256,
        height=256,
        num_frames=5,
        fps=8,
        duration_s=0.625,
    )


class FakePipeline:
    """Answers each attempt with the next outcome of its request (by prompt): `"completed"`, or an error to fail
    with. Each attempt first tells its `track` that its render ended, then waits for `release` if one is set for the
    request, so a test holds a job past its render for as long as it likes."""

    def __init__(self, outcomes: dict[str, list[str | VidgenError]] | None = None) -> None:
        self._outcomes = outcomes or {}
        self.release: dict[str, asyncio.Event] = {}
        self.attempts: list[tuple[str, int]] = []

    async def process(
        self, request: VideoRequest, *, received_at: datetime, attempt: int = 1, **rest: Any
    ) -> VideoResult:
        """`JobPipeline.process`, of which it reads `track` besides the request."""
        self.attempts.append((request.request_id, attempt))
        rest["track"].render_ended()
        hold = self.release.get(request.request_id)
        if hold is not None:
            await hold.wait()
        queue = self._outcomes.get(request.prompt, [])
        outcome = queue.pop(0) if len(queue) > 1 else (queue[0] if queue else "completed")
        timings = not_started(received_at)
        if outcome == "completed":
            video = video_info()
            return completed(request, video=video, cache_hit=False, timings=timings, attempt=attempt, identity=IDENTITY)
        assert isinstance(outcome, VidgenError)
        return failed(request, outcome, timings=timings, attempt=attempt, identity=IDENTITY)


# --- The template pool (issue 16) ------------------------------------------------------------------------------


def template_renderer() -> Renderer:
    """The template pipeline, loaded the way `VIDGEN_MODEL=template` loads it."""
    import torch

    from consumer.render.loader import load_model
    from consumer.render.renderer import Renderer

    return Renderer(lambda: load_model("template", device=torch.device("cpu"), dtype=torch.float32))
