"""Never throw away GPU work: real workers with the tiny model (steps slowed so a test can stop them mid-render), the
real broker and S3 server. A worker told to stop checkpoints its render and gives the record back; a worker killed
with SIGKILL leaves its last periodic checkpoint; the next owner resumes either, and the video's decoded frames are
identical to an uninterrupted render's. Cancelling a request deletes its checkpoint, as answering it does; a deadline
that passed while the render was handed back is checked before the resume."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from numpy.typing import NDArray

from consumer.core.clock import utc_now
from consumer.core.keys import checkpoint_key
from consumer.crash_guard.counts import StartCounts
from consumer.dev.embedded import free_port
from consumer.object_store import ObjectStore
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.worker.checkpoint_store import MAX_CHECKPOINT_BYTES
from consumer.worker.video_encoding import encode_mp4
from schemas.events import VideoControl, VideoProgress, VideoRequest, VideoResult
from tests.checkpoint_worker import slow_tiny_pipeline
from tests.support import REPO, KafkaClient, ready, request_body, until

STEP_S = 0.15
STEPS = 24
BODY = {"prompt": "a red sneaker turning", "seed": 7, "num_inference_steps": STEPS, "fps": 8}


@pytest.fixture(scope="module")
def slow_renderer() -> Any:
    renderer = Renderer(lambda: slow_tiny_pipeline(STEP_S))
    yield renderer
    renderer.close()


@pytest.fixture(scope="module")
async def reference_frames(tiny_renderer: Renderer) -> NDArray[np.uint8]:
    """The request's video rendered without interruption, encoded and decoded as a worker's would be."""
    request = VideoRequest.model_validate(request_body("reference", **BODY))
    spec = RenderSpec(
        prompt=request.prompt,
        negative_prompt="",
        width=request.width,
        height=request.height,
        num_frames=request.num_frames,
        steps=STEPS,
        guidance_scale=request.guidance_scale,
        seed=7,
    )
    await tiny_renderer.start()
    frames = (await tiny_renderer.render(spec, None, timeout_s=120)).frames
    return _decoded(await asyncio.to_thread(encode_mp4, frames, fps=8))


def _decoded(mp4: bytes) -> NDArray[np.uint8]:
    with av.open(io.BytesIO(mp4)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


async def _video(result: VideoResult) -> NDArray[np.uint8]:
    assert result.video is not None
    async with aiohttp.ClientSession() as http, http.get(result.video.url) as response:
        assert response.status == 200
        return _decoded(await response.read())


def _key(settings: Settings, body: dict[str, Any]) -> str:
    return checkpoint_key(prefix=settings.s3_key_prefix, request=VideoRequest.model_validate(body), model="tiny")


async def _stored_step(store: ObjectStore, key: str) -> int:
    """The step of the stored checkpoint (0 while there is none)."""
    found = await store.head(key)
    return 0 if found is None else int(found.metadata["vidgen-steps-done"])


async def _progress(kafka: KafkaClient, request_id: str) -> list[tuple[str, int, str]]:
    records, _ = await kafka.read_to_end(kafka.settings.progress_topic)
    events = [VideoProgress.model_validate_json(record.value) for record in records]
    return [(event.event, event.step, event.worker_id) for event in events if event.request_id == request_id]


@pytest.fixture
def checkpointing(settings: Settings) -> Settings:
    return settings.model_copy(update={"model": "tiny", "progress_interval_s": 0.0, "checkpoint_interval_s": 0.0})


async def test_a_stopped_worker_hands_its_render_back_and_the_next_resumes_it_identically(
    checkpointing: Settings,
    kafka: KafkaClient,
    store: ObjectStore,
    start_worker: Callable[..., Any],
    slow_renderer: Renderer,
    reference_frames: NDArray[np.uint8],
) -> None:
    first = await start_worker(checkpointing.model_copy(update={"worker_id": "first"}), renderer=slow_renderer)
    body = request_body("handed-back", **BODY)
    await kafka.send(body)
    await until(lambda: _stepped(first.progress, 4), timeout_s=120)
    assert await first.shutdown() == 0  # as on SIGTERM: checkpoint at the next step, publish nothing, leave
    stored = await _stored_step(store, _key(checkpointing, body))
    assert 4 <= stored < STEPS
    results, _ = await kafka.read_to_end(checkpointing.results_topic)
    assert results == []  # nothing published for it, and its offset is not committed
    assert not any((await kafka.committed()).values())

    second = await start_worker(checkpointing.model_copy(update={"worker_id": "second"}), renderer=slow_renderer)
    [result] = (await kafka.results(1, timeout_s=120)).values()
    assert (result.status, result.worker_id, result.resumed_from_step) == ("completed", "second", stored)
    assert np.array_equal(await _video(result), reference_frames)  # the same video, decoded frame for frame
    steps = [step for request_id, step, _ in second.progress if request_id == "handed-back"]
    assert steps == list(range(stored + 1, STEPS + 1))  # only the steps left, counted from the render's first
    events = await until(lambda: _events_until_resumed(kafka, "handed-back"), timeout_s=30)
    assert ("checkpointed", stored, "first") in events and ("resumed", stored, "second") in events
    await until(lambda: _gone(store, _key(checkpointing, body)), timeout_s=30)  # deleted once answered


async def test_a_cancel_deletes_the_checkpoint_of_a_handed_back_request(
    checkpointing: Settings,
    kafka: KafkaClient,
    store: ObjectStore,
    start_worker: Callable[..., Any],
    slow_renderer: Renderer,
) -> None:
    body = request_body("cancelled", **BODY)
    key = await _handed_back(
        body, checkpointing, kafka, store, await start_worker(checkpointing, renderer=slow_renderer)
    )
    command = VideoControl(action="cancel", request_id="cancelled", tenant_id="shop-1", requested_at=utc_now())
    await kafka.producer.send_and_wait(
        checkpointing.control_topic, key=b"cancelled", value=command.model_dump_json().encode()
    )
    await start_worker(checkpointing, renderer=slow_renderer)
    [result] = (await kafka.results(1, timeout_s=120)).values()
    assert result.error is not None and result.error.code == "cancelled"
    await until(lambda: _gone(store, key), timeout_s=30)


async def test_a_deadline_that_passed_meanwhile_is_checked_before_the_resume(
    checkpointing: Settings,
    kafka: KafkaClient,
    store: ObjectStore,
    start_worker: Callable[..., Any],
    slow_renderer: Renderer,
) -> None:
    worker = await start_worker(checkpointing, renderer=slow_renderer)
    deadline = utc_now() + timedelta(seconds=20)  # room for the first worker to start the render on a busy machine
    key = await _handed_back(
        request_body("late", deadline=deadline.isoformat(), **BODY), checkpointing, kafka, store, worker
    )
    await until(lambda: _past(deadline), timeout_s=30)
    await start_worker(checkpointing, renderer=slow_renderer)
    [result] = (await kafka.results(1, timeout_s=120)).values()
    assert (result.status, result.resumed_from_step) == ("failed", None)
    assert result.error is not None and result.error.code == "expired"  # not resumed past its deadline
    await until(lambda: _gone(store, key), timeout_s=30)


async def _handed_back(
    body: dict[str, Any], settings: Settings, kafka: KafkaClient, store: ObjectStore, worker: Any
) -> str:
    """Send `body`, stop `worker` once it rendered 2 steps of it (it hands the render back); the checkpoint's key."""
    await kafka.send(body)
    await until(lambda: _stepped(worker.progress, 2), timeout_s=120)
    await worker.shutdown()
    key = _key(settings, body)
    assert await _stored_step(store, key) >= 2
    return key


async def _past(moment: datetime) -> bool:
    return utc_now() > moment


def _spawn(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m tests.checkpoint_worker` with these settings, its output in `log_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGEN_")} | settings.as_environment()
    command = [sys.executable, "-m", "tests.checkpoint_worker", str(STEP_S)]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)


@pytest.fixture
async def worker_process(checkpointing: Settings, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[subprocess.Popen[bytes]] = []

    async def start(**overrides: Any) -> subprocess.Popen[bytes]:
        port = free_port()
        settings = checkpointing.model_copy(update={"http_port": port, "log_format": "text", **overrides})
        started.append(_spawn(settings, tmp_path / f"worker-{len(started)}.log"))
        await until(lambda: _ready(port), timeout_s=180)
        return started[-1]

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_after_a_kill_the_next_owner_resumes_from_the_last_periodic_checkpoint_and_the_death_counts(
    checkpointing: Settings,
    kafka: KafkaClient,
    store: ObjectStore,
    worker_process: Callable[..., Any],
    start_worker: Callable[..., Any],
    slow_renderer: Renderer,
    reference_frames: NDArray[np.uint8],
) -> None:
    victim = await worker_process(checkpoint_interval_s=0.5, session_timeout_ms=3_000, heartbeat_interval_ms=300)
    body = request_body("killed", **BODY)
    await kafka.send(body)
    key = _key(checkpointing, body)
    await until(lambda: _stored_step(store, key), timeout_s=120)  # a periodic checkpoint is stored
    victim.send_signal(signal.SIGKILL)  # no drain, no goodbye: as a lost node or the OOM killer
    victim.wait()
    stored = await _stored_step(store, key)
    assert 0 < stored < STEPS
    counts = StartCounts()
    records, _ = await kafka.read_to_end(checkpointing.attempts_topic)
    for record in records:
        counts.apply(record.key, record.value)
    assert len(counts) == 1  # the death is counted, checkpoint or not

    await start_worker(checkpointing, renderer=slow_renderer)
    [result] = (await kafka.results(1, timeout_s=180)).values()
    assert (result.status, result.resumed_from_step) == ("completed", stored)
    assert np.array_equal(await _video(result), reference_frames)
    await until(lambda: _gone(store, key), timeout_s=30)


async def _stepped(progress: list[tuple[str, int, int]], step: int) -> bool:
    return any(seen >= step for _, seen, _ in progress)


async def _events_until_resumed(kafka: KafkaClient, request_id: str) -> list[tuple[str, int, str]] | None:
    events = await _progress(kafka, request_id)
    return events if any(kind == "resumed" for kind, _, _ in events) else None


async def _gone(store: ObjectStore, key: str) -> bool:
    return await store.read(key, max_bytes=MAX_CHECKPOINT_BYTES) is None


async def _ready(port: int) -> bool:
    try:
        return await ready(port)
    except aiohttp.ClientError:
        return False
