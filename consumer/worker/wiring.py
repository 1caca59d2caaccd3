"""Wire the worker together from settings: S3, HTTP probes, model, Kafka. The one place that owns their lifetimes.

`serve` runs the named steps below in order, each an async context manager on one exit stack, so whatever started
is stopped in reverse order however the run ends: the S3 client, the probes, the producer (first, so brokers that
refuse it fail the start before a model loads), the renderer, the follower of the control and attempts topics, then
the worker itself until it is told to stop (or its model breaks). Every collaborator is built here and passed in:
the follower's consumer, cancel index and counts, the scheduler and its one event queue (shared with the follower),
the job runner, the pipeline and the consume loop's consumer factory. The HTTP probes are in `readiness`, the memory
gate's construction in `memory_budget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Tracer

from consumer.cancellation.commands import CancelIndex
from consumer.core.clock import utc_now
from consumer.core.moderation import ContentPolicy
from consumer.core.results import Identity
from consumer.crash_guard.counts import StartCounts
from consumer.crash_guard.ledger import CrashGuardLedger
from consumer.images.https_download import FetchPolicy
from consumer.images.sources import S3Sources, StartImageSource
from consumer.kafka.clients import ensure_topics, make_consumer, make_state_consumer, start_producer, worker_topics
from consumer.kafka.progress import ProgressReporter
from consumer.kafka.state_topics import StateTopicsFollower
from consumer.kafka.worker_publisher import WorkerPublisher
from consumer.memory.probe import MemoryProbe
from consumer.object_store import ObjectStore, open_s3_client
from consumer.render.loader import load_pipeline, resolve_device, resolve_dtype
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.settings.pools import worker_settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.consume_loop import ConsumeLoop
from consumer.worker.job_pipeline import JobPipeline
from consumer.worker.job_ports import ProgressListener, StepFn
from consumer.worker.job_runner import JobRunner
from consumer.worker.memory_budget import memory_gate
from consumer.worker.readiness import Readiness, probes
from consumer.worker.scheduler import JobScheduler, SchedulerEvent
from schemas.events import VideoRequest

__all__ = ["ProgressSink", "serve"]

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, int, int], None]
"""(request_id, step, total) after each denoising step: the demo's progress bar, the tests' record of steps."""


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    on_progress: ProgressSink | None = None,
    on_http_port: Callable[[int], None] | None = None,
    tracer: Tracer | None = None,
    renderer: Renderer | None = None,
    memory_probe: MemoryProbe | None = None,
    burst: bool = False,
) -> int:
    """Run one worker until `stop` is set (with `burst`, also until everything there was is answered). Returns the
    process exit code: 0 after a clean drain, 1 when the model is unusable (the orchestrator should restart the
    process). A `renderer` passed in is started here but never closed: it may serve several workers. Settings whose
    topics or group contradict the model raise `pool_mismatch` before anything starts (`worker_settings`)."""
    settings = worker_settings(settings)
    metrics = Metrics()
    model = renderer or _renderer(settings)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_object_store(settings))
        readiness = Readiness(model, store)
        await stack.enter_async_context(probes(settings, metrics, readiness, on_http_port))
        if renderer is None:
            stack.callback(model.close)
        await _prepare_infrastructure(settings, store)
        producer = await stack.enter_async_context(_producer(settings))
        await _load(model, settings)
        state = _StateTopics(settings)
        controls = await stack.enter_async_context(_controls(settings, metrics, state))
        readiness.worker = _worker(
            settings,
            model,
            store,
            producer,
            metrics,
            controls=controls,
            state=state,
            tracer=tracer,
            on_progress=on_progress,
            probe=memory_probe,
        )
        await _run_until_stop_or_broken(readiness.worker, model, stop, burst=burst)
    if model.state == "failed":
        log.error("exiting non-zero: %s", model.failure)
        return 1
    return 0


def _renderer(settings: Settings) -> Renderer:
    device = resolve_device(settings.device)
    load = functools.partial(
        load_pipeline,
        settings.model,
        device=device,
        dtype=resolve_dtype(settings.dtype, device),
        standin_render_s=settings.standin_render_s,
        compile_backend=settings.torch_compile_backend if settings.torch_compile else None,
        step_cache_threshold=settings.step_cache_threshold,
        fp8=settings.fp8,
    )
    return Renderer(load, device=device, oom_downgrade=settings.oom_downgrade)


@contextlib.asynccontextmanager
async def _object_store(settings: Settings) -> AsyncIterator[ObjectStore]:
    async with open_s3_client(settings) as s3:
        yield ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)


async def _prepare_infrastructure(settings: Settings, store: ObjectStore) -> None:
    if settings.s3_create_bucket:
        await store.ensure_bucket()
    if settings.create_topics:
        await ensure_topics(settings, worker_topics(settings))


async def _load(renderer: Renderer, settings: Settings) -> None:
    """The model loaded (and warmed up) before the worker joins its group: a member that cannot render yet would
    only hold partitions."""
    await renderer.start()
    if settings.warmup:
        width, height, frames = (int(part) for part in settings.warmup.split("x"))
        await renderer.warm_up(width, height, frames)


@contextlib.asynccontextmanager
async def _producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = await start_producer(settings)
    try:
        yield producer
    finally:
        await producer.stop()


class _StateTopics:
    """What the control and attempts topics feed: the cancel index, the crash guard's counts, and the scheduler's one
    event queue, where the follower puts each new cancel command."""

    def __init__(self, settings: Settings) -> None:
        self.cancels = CancelIndex(retention_s=settings.control_retention_s, clock=utc_now)
        self.counts = StartCounts()
        self.events: asyncio.Queue[SchedulerEvent] = asyncio.Queue()


@contextlib.asynccontextmanager
async def _controls(settings: Settings, metrics: Metrics, state: _StateTopics) -> AsyncIterator[StateTopicsFollower]:
    """Cancel commands and crash-guard counts, followed from start-up until the worker has stopped."""
    follower = StateTopicsFollower(
        make_state_consumer(settings),
        settings,
        metrics,
        cancels=state.cancels,
        counts=state.counts,
        commands=state.events,
    )
    await follower.start()
    try:
        yield follower
    finally:
        await follower.stop()


def _worker(
    settings: Settings,
    renderer: Renderer,
    store: ObjectStore,
    producer: AIOKafkaProducer,
    metrics: Metrics,
    *,
    controls: StateTopicsFollower,
    state: _StateTopics,
    tracer: Tracer | None,
    on_progress: ProgressSink | None,
    probe: MemoryProbe | None,
) -> ConsumeLoop:
    """The worker and the collaborators it is built from."""
    identity = Identity(worker_id=settings.worker_id, model=settings.model, degraded=renderer.degraded)
    pipeline = JobPipeline(
        settings=settings,
        store=store,
        images=_start_images(settings, store),
        renderer=renderer,
        identity=identity,
        metrics=metrics,
        moderator=ContentPolicy.from_sources(
            terms=settings.banned_terms,
            path=settings.banned_terms_file,
            fields=("prompt", "negative_prompt") if settings.policy_check_negative_prompt else ("prompt",),
        ),
        tracer=tracer,
    )
    progress: list[ProgressListener] = []
    if settings.progress_events:
        progress.append(ProgressReporter(producer, settings))
    if on_progress is not None:
        progress.append(_SinkProgress(on_progress))
    memory = memory_gate(settings, renderer, probe, metrics)
    publisher = WorkerPublisher(producer, settings, tracer=tracer)
    runner = JobRunner(
        settings=settings,
        publisher=publisher,
        pipeline=pipeline,
        identity=identity,
        metrics=metrics,
        tracer=tracer,
        memory=memory,
        progress=progress,
        starts=CrashGuardLedger(publisher, state.counts, settings),
    )
    scheduler = JobScheduler(settings, runner, metrics, events=state.events, cancels=state.cancels)
    return ConsumeLoop(
        settings=settings,
        consumer_factory=functools.partial(make_consumer, settings),
        scheduler=scheduler,
        metrics=metrics,
        memory=memory,
        controls=controls,
    )


class _SinkProgress:
    """A `ProgressSink` as a `ProgressListener`."""

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink

    def started(self, request: VideoRequest, *, attempt: int) -> StepFn:
        return functools.partial(self._sink, request.request_id)


def _start_images(settings: Settings, store: ObjectStore) -> StartImageSource:
    return StartImageSource(
        store=store,
        sources=S3Sources(
            output_bucket=settings.s3_bucket,
            key_prefix=settings.s3_key_prefix,
            shared_buckets=frozenset(settings.s3_image_buckets),
        ),
        policy=FetchPolicy(
            max_bytes=settings.image_max_bytes,
            connect_timeout_s=min(5.0, settings.image_timeout_s),
            read_timeout_s=settings.image_timeout_s,
            max_redirects=settings.image_max_redirects,
            host_allowlist=settings.image_host_allowlist,
        ),
        max_bytes=settings.image_max_bytes,
    )


async def _run_until_stop_or_broken(
    worker: ConsumeLoop, renderer: Renderer, stop: asyncio.Event, *, burst: bool
) -> None:
    """A renderer that broke (device error) cannot recover in-process: stop consuming so a restart can."""

    async def watch_renderer() -> None:
        while not stop.is_set():
            if renderer.state == "failed":
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_renderer())
    try:
        await worker.run(stop, burst=burst)
    finally:
        watcher.cancel()
