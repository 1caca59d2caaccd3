"""The worker's admission by device memory, as the wiring builds it once the model is loaded: the memory modes the
device allows (or the one `VIDGEN_MEMORY_MODE` forces), and the probe of free memory: the GPU's own, or on a CPU
worker a budget, configured or derived from the memory limit."""

from __future__ import annotations

import logging
from pathlib import Path

from consumer.errors import ModeUnsupported
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
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics

__all__ = ["memory_gate"]

log = logging.getLogger(__name__)


def memory_gate(
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
