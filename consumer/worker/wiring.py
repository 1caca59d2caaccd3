"""Wire the worker together from settings: S3, HTTP probes, model, Kafka. The one place that owns their lifetimes.

`serve` runs the named steps below in order, each an async context manager on one exit stack, so whatever started
is stopped in reverse order however the run ends: the S3 client, the probes, the producer (first, so brokers that
refuse it fail the start before a model loads), the renderer, the follower of the control and attempts topics, then
the worker itself until it is told to stop (or its model breaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Tracer

from consumer.core.moderation import ContentPolicy
from consumer.core.results import Identity
from consumer.crash_guard.ledger import CrashGuardLedger
from consumer.errors import ModeUnsupported, VidgenError
from consumer.http_server.health_routes import ReadinessCheck, bound_port, start_http
from consumer.images.https_download import FetchPolicy
from consumer.images.sources import S3Sources, StartImageSource
from consumer.kafka.clients import ensure_topics, make_consumer, start_producer, worker_topics
from consumer.kafka.progress import ProgressReporter
from consumer.kafka.state_topics import StateTopicsFollower
from consumer.kafka.worker_publisher import WorkerPublisher
from consumer.memory.admission import SafetyMargin
from consumer.memory.gate import MemoryGate
from consumer.memory.modes import MemoryMode, supported_modes
from consumer.memory.probe import (
    CpuBudgetProbe,
    CudaProbe,
    MemoryProbe,
    cpu_budget_bytes,
    memory_limit_bytes,
    process_rss_bytes,
)
from consumer.object_store import ObjectStore, open_s3_client
from consumer.render.loader import load_pipeline, resolve_device, resolve_dtype
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.consume_loop import ConsumeLoop
from consumer.worker.job_pipeline import JobPipeline
from consumer.worker.job_runner import JobRunner, ProgressListener, StepFn
from schemas.events import VideoRequest

__all__ = ["ProgressSink", "serve"]

log = logging.getLogger(__name__)

ProgressSink = Callable[[str, int, int], None]
"""(request_id, step, total) after each denoising step: the demo's progress bar, the tests' record of steps."""

_S3_CHECK_TIMEOUT_S = 3.0


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
    process). A `renderer` passed in is started here but never closed: it may serve several workers."""
    metrics = Metrics()
    model = renderer or _renderer(settings)
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_object_store(settings))
        readiness = _Readiness(model, store)
        await stack.enter_async_context(_probes(settings, metrics, readiness, on_http_port))
        if renderer is None:
            stack.callback(model.close)
        await _prepare_infrastructure(settings, store)
        producer = await stack.enter_async_context(_producer(settings))
        await _load(model, settings)
        controls = await stack.enter_async_context(_controls(settings, metrics))
        readiness.worker = _worker(
            settings,
            model,
            store,
            producer,
            metrics,
            controls=controls,
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


class _Readiness:
    """What /readyz asks: the model is warm, the worker is in its group with brokers answering, S3 answers."""

    def __init__(self, renderer: Renderer, store: ObjectStore) -> None:
        self._renderer = renderer
        self._store = store
        self.worker: ConsumeLoop | None = None

    def checks(self) -> dict[str, ReadinessCheck]:
        return {"model": self._model, "consumer_group": self._group, "s3": self._s3}

    async def _model(self) -> str | None:
        return None if self._renderer.state in ("ready", "busy") else f"model is {self._renderer.state}"

    async def _group(self) -> str | None:
        if self.worker is None or not self.worker.joined:
            return "not a member of the consumer group yet"
        return await self.worker.check_broker()

    async def _s3(self) -> str | None:
        try:
            await asyncio.wait_for(self._store.ping(), _S3_CHECK_TIMEOUT_S)
        except (VidgenError, TimeoutError) as exc:
            return f"object storage unreachable: {exc}"
        return None


@contextlib.asynccontextmanager
async def _probes(
    settings: Settings, metrics: Metrics, readiness: _Readiness, on_http_port: Callable[[int], None] | None
) -> AsyncIterator[None]:
    """/healthz, /readyz and /metrics, from before the model loads until the worker has stopped."""
    http = await start_http(
        host=settings.http_host, port=settings.http_port, metrics=metrics, checks=readiness.checks()
    )
    try:
        if on_http_port is not None:
            on_http_port(bound_port(http))
        yield
    finally:
        await http.cleanup()


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


@contextlib.asynccontextmanager
async def _controls(settings: Settings, metrics: Metrics) -> AsyncIterator[StateTopicsFollower]:
    """Cancel commands and crash-guard counts, followed from start-up until the worker has stopped."""
    follower = StateTopicsFollower(settings, metrics)
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
    memory = _memory_gate(settings, renderer, probe, metrics)
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
        starts=CrashGuardLedger(publisher, controls.attempts, settings),
    )
    consumer_factory = functools.partial(make_consumer, settings)
    return ConsumeLoop(
        settings=settings,
        consumer_factory=consumer_factory,
        runner=runner,
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


def _memory_gate(
    settings: Settings, renderer: Renderer, probe: MemoryProbe | None, metrics: Metrics
) -> MemoryGate | None:
    """Admission by device memory; None where nothing measures memory (the stand-in, the template renderer). Built
    once the model is loaded: a CPU worker's default budget starts from what the process holds then."""
    allowed = supported_modes(renderer.device.type)
    forced = None if settings.memory_mode == "auto" else MemoryMode(settings.memory_mode)
    if forced is not None and forced not in allowed:
        raise ModeUnsupported(f"VIDGEN_MEMORY_MODE={forced.value} cannot run on {renderer.device}")
    if settings.model in ("standin", "template"):  # no weights, nothing to estimate (template: a few frames' worth)
        return None
    return MemoryGate(
        probe or _default_probe(settings, renderer),
        renderer.profile,
        margin=SafetyMargin(settings.memory_margin_bytes, settings.memory_margin_fraction),
        forced=forced,
        allowed=allowed,
        held_bytes=renderer.held_bytes,
        metrics=metrics,
    )


def _default_probe(settings: Settings, renderer: Renderer) -> MemoryProbe:
    """The GPU's own free memory; on a CPU worker the configured budget, else one derived from the memory limit.

    Derived: the cgroup limit (or total memory) less the process's RSS now, after the model loaded, except the
    weights (every estimate counts them), less the memory start-image decodes may take beside a render: render
    slots hold jobs that decode and jobs admitted to render, so at most VIDGEN_MAX_INFLIGHT_JOBS - 1 decodes
    run while a render is admitted (and while all of them decode, nothing renders).
    """
    if renderer.device.type == "cuda":
        return CudaProbe(renderer.device.index or 0, backend=settings.memory_probe)
    if settings.cpu_memory_budget_bytes is not None:
        return CpuBudgetProbe(settings.cpu_memory_budget_bytes)
    limit = memory_limit_bytes(Path(settings.cgroup_root))
    decodes = (settings.max_inflight_jobs - 1) * settings.image_decode_memory_bytes
    budget = cpu_budget_bytes(
        limit,
        resident_bytes=process_rss_bytes(),
        weights_bytes=renderer.profile().weights_bytes,
        reserved_bytes=decodes,
    )
    log.info(
        "CPU memory budget %d MiB: limit %d MiB, less the worker's resident memory beyond its weights and %d MiB "
        "for start-image decodes (VIDGEN_CPU_MEMORY_BUDGET_BYTES overrides)",
        budget >> 20,
        limit >> 20,
        decodes >> 20,
    )
    return CpuBudgetProbe(budget)


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
