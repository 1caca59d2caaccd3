"""Wire the worker together from settings: HTTP, model, S3, Kafka. The one place that owns their lifetimes."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path

from opentelemetry.trace import Tracer

from consumer.core.clock import utc_now
from consumer.core.moderation import ContentPolicy
from consumer.core.results import Identity
from consumer.errors import ModeUnsupported, VidgenError
from consumer.job.https_download import FetchPolicy
from consumer.job.pipeline import JobPipeline
from consumer.job.start_image import S3Sources, StartImageSource
from consumer.kafka.clients import ensure_topics, make_consumer, make_producer, worker_topics
from consumer.kafka.consume_loop import ProgressSink, Worker
from consumer.kafka.progress import ProgressReporter
from consumer.kafka.publisher import Publisher
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
from consumer.render.loader import load_pipeline, resolve_device, resolve_dtype
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.storage import ObjectStore, open_s3_client
from consumer.telemetry.metrics import Metrics
from consumer.telemetry.probes import bound_port, start_http

__all__ = ["serve"]

log = logging.getLogger(__name__)

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
) -> int:
    """Run one worker until `stop` is set. Returns the process exit code: 0 after a clean drain, 1 when the
    model is unusable (the orchestrator should restart the process)."""
    metrics = Metrics()
    owns_renderer = renderer is None
    device = resolve_device(settings.device)
    renderer = renderer or Renderer(
        functools.partial(
            load_pipeline,
            settings.model,
            device=device,
            dtype=resolve_dtype(settings.dtype, device),
            standin_render_s=settings.standin_render_s,
            compile_backend=settings.torch_compile_backend if settings.torch_compile else None,
            step_cache_threshold=settings.step_cache_threshold,
            fp8=settings.fp8,
        ),
        device=device,
        oom_downgrade=settings.oom_downgrade,
    )
    worker: Worker | None = None

    async with open_s3_client(settings) as s3:
        store = ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)

        async def model_check() -> str | None:
            return None if renderer.state in ("ready", "busy") else f"model is {renderer.state}"

        async def group_check() -> str | None:
            if worker is None or not worker.joined:
                return "not a member of the consumer group yet"
            return await worker.check_broker()

        async def s3_check() -> str | None:
            try:
                await asyncio.wait_for(store.ping(), _S3_CHECK_TIMEOUT_S)
            except (VidgenError, TimeoutError) as exc:
                return f"object storage unreachable: {exc}"
            return None

        http = await start_http(
            host=settings.http_host,
            port=settings.http_port,
            metrics=metrics,
            checks={"model": model_check, "consumer_group": group_check, "s3": s3_check},
        )
        if on_http_port is not None:
            on_http_port(bound_port(http))
        try:
            if settings.s3_create_bucket:
                await store.ensure_bucket()
            if settings.create_topics:
                await ensure_topics(settings, worker_topics(settings))
            # Load before joining the group: a member that cannot render yet would only hold partitions.
            await renderer.start()
            if settings.warmup:
                width, height, frames = (int(part) for part in settings.warmup.split("x"))
                await renderer.warm_up(width, height, frames)
            producer = make_producer(settings)
            await producer.start()
            try:
                identity = Identity(worker_id=settings.worker_id, model=settings.model)
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
                worker = Worker(
                    settings=settings,
                    consumer_factory=functools.partial(make_consumer, settings),
                    publisher=Publisher(producer, settings, tracer=tracer),
                    pipeline=pipeline,
                    identity=identity,
                    metrics=metrics,
                    tracer=tracer,
                    on_progress=on_progress,
                    memory=_memory_gate(settings, renderer, memory_probe, metrics),
                    progress=ProgressReporter(producer, settings, clock=utc_now) if settings.progress_events else None,
                )
                await _run_until_stop_or_broken(worker, renderer, stop)
            finally:
                await producer.stop()
        finally:
            if owns_renderer:
                renderer.close()
            await http.cleanup()
    if renderer.state == "failed":
        log.error("exiting non-zero: %s", renderer.failure)
        return 1
    return 0


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
    """Admission by device memory; None where nothing measures memory (the stand-in). Built once the model is
    loaded: a CPU worker's default budget starts from what the process holds then."""
    forced = None if settings.memory_mode == "auto" else MemoryMode(settings.memory_mode)
    if forced is not None and forced not in supported_modes(renderer.device.type):
        raise ModeUnsupported(f"VIDGEN_MEMORY_MODE={forced.value} cannot run on {renderer.device}")
    if settings.model == "standin":
        return None
    return MemoryGate(
        probe or _default_probe(settings, renderer),
        renderer.profile,
        margin=SafetyMargin(settings.memory_margin_bytes, settings.memory_margin_fraction),
        forced=forced,
        allowed=supported_modes(renderer.device.type),
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


async def _run_until_stop_or_broken(worker: Worker, renderer: Renderer, stop: asyncio.Event) -> None:
    """A renderer that broke (device error) cannot recover in-process: stop consuming so a restart can."""

    async def watch_renderer() -> None:
        while not stop.is_set():
            if renderer.state == "failed":
                stop.set()
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch_renderer())
    try:
        await worker.run(stop)
    finally:
        watcher.cancel()
