"""The worker's memory gate, built from settings once the model is loaded: a model's renders admitted by device
memory (`MemoryGate`: the GPU's, or a CPU worker's budget), the template pool's jobs by the worker's own memory
(`JobMemoryGate`), the stand-in not at all."""

from __future__ import annotations

import logging
from pathlib import Path

from consumer.errors import ModeUnsupported
from consumer.memory.admission import SafetyMargin
from consumer.memory.estimate import estimate_per_mode
from consumer.memory.gate import JobMemoryGate, MemoryGate
from consumer.memory.modes import MemoryMode, supported_modes
from consumer.memory.probe import (
    CpuBudgetProbe,
    CudaProbe,
    MemoryProbe,
    cpu_budget_bytes,
    memory_limit_bytes,
    process_rss_bytes,
)
from consumer.memory.template_estimate import decode_bytes, template_job_bytes
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.settings.pools import TEMPLATE_MODEL
from consumer.telemetry.worker_metrics import Metrics
from schemas.events import VideoRequest

__all__ = ["memory_gate"]

log = logging.getLogger(__name__)


def memory_gate(
    settings: Settings, renderer: Renderer, probe: MemoryProbe | None, metrics: Metrics
) -> MemoryGate | None:
    """Admission by memory; None for the stand-in (nothing to estimate). Built once the model is loaded: a CPU
    worker's default budget starts from what the process holds then."""
    allowed = supported_modes(renderer.device.type)
    forced = None if settings.memory_mode == "auto" else MemoryMode(settings.memory_mode)
    if forced is not None and forced not in allowed:
        raise ModeUnsupported(f"VIDGEN_MEMORY_MODE={forced.value} cannot run on {renderer.device}")
    margin = SafetyMargin(settings.memory_margin_bytes, settings.memory_margin_fraction)
    if settings.model == TEMPLATE_MODEL:
        return _template_gate(settings, probe, margin, metrics)
    if settings.model == "standin":  # no weights, no frames: nothing to estimate
        return None

    def estimates(request: VideoRequest) -> dict[MemoryMode, int]:
        width, height, frames, guidance = request.width, request.height, request.num_frames, request.guidance_scale
        return estimate_per_mode(width, height, frames, guidance, renderer.profile())

    return MemoryGate(
        probe or _default_probe(settings, renderer),
        estimates,
        margin=margin,
        forced=forced,
        allowed=allowed,
        held_bytes=renderer.held_bytes,
        metrics=metrics,
    )


def _template_gate(
    settings: Settings, probe: MemoryProbe | None, margin: SafetyMargin, metrics: Metrics
) -> JobMemoryGate:
    """Each job reserves its peak (`consumer.memory.template_estimate`), its start-image decode included, until it is
    answered, against `VIDGEN_CPU_MEMORY_BUDGET_BYTES`, else the memory limit less what the worker holds now: at
    any concurrency the jobs' frames, encoders and decodes together stay inside it."""
    decode = decode_bytes(
        decode_memory_bytes=settings.image_decode_memory_bytes, image_max_bytes=settings.image_max_bytes
    )

    def estimate(request: VideoRequest) -> int:
        image = decode if request.image_url is not None else None
        return template_job_bytes(request.width, request.height, request.num_frames, decode=image)

    if probe is None and settings.cpu_memory_budget_bytes is not None:
        probe = CpuBudgetProbe(settings.cpu_memory_budget_bytes)
    return JobMemoryGate(
        probe or _derived_budget(settings, weights_bytes=0, decodes=0), estimate, margin=margin, metrics=metrics
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
    decodes = (settings.max_inflight_jobs - 1) * settings.image_decode_memory_bytes
    return _derived_budget(settings, weights_bytes=renderer.profile().weights_bytes, decodes=decodes)


def _derived_budget(settings: Settings, *, weights_bytes: int, decodes: int) -> CpuBudgetProbe:
    limit = memory_limit_bytes(Path(settings.cgroup_root))
    budget = cpu_budget_bytes(
        limit, resident_bytes=process_rss_bytes(), weights_bytes=weights_bytes, reserved_bytes=decodes
    )
    log.info(
        "CPU memory budget %d MiB: limit %d MiB, less the worker's resident memory beyond its weights and %d MiB "
        "for start-image decodes (VIDGEN_CPU_MEMORY_BUDGET_BYTES overrides)",
        budget >> 20,
        limit >> 20,
        decodes >> 20,
    )
    return CpuBudgetProbe(budget)
