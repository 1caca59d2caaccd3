"""Putting a loaded pipeline in a memory mode (`consumer/memory/modes.py` says what each mode is), and reading back
the mode it is in. Moves weights: slow, call off the event loop."""

from __future__ import annotations

import logging
from typing import Any

import torch

from consumer.errors import ModeUnsupported
from consumer.memory.modes import OFFLOAD_MODES, MemoryMode, supported_modes

__all__ = ["apply_mode", "current_mode"]

log = logging.getLogger(__name__)


def current_mode(pipeline: Any) -> MemoryMode:
    """Read the mode back from the pipeline itself, so switching is idempotent and survives outside changes."""
    hooked = [m for m in _modules(pipeline) if hasattr(m, "_hf_hook")]
    if hooked:
        # Sequential offload parks every weight on the meta device between uses; model offload keeps real weights.
        on_meta = any(p.device.type == "meta" for m in hooked for p in m.parameters())
        return MemoryMode.SEQUENTIAL_OFFLOAD if on_meta else MemoryMode.MODEL_OFFLOAD
    if getattr(pipeline.vae, "use_tiling", False):
        return MemoryMode.VAE_TILING
    return MemoryMode.RESIDENT


def apply_mode(pipeline: Any, mode: MemoryMode, device: torch.device | str) -> None:
    """Put `pipeline` in `mode` on `device`. Slow when weights move (seconds for a 7B model): call off the loop.

    Raises ModeUnsupported for an offload mode on a CPU device, before touching the pipeline.
    """
    device = torch.device(device)
    if mode not in supported_modes(device.type):
        raise ModeUnsupported(f"memory mode {mode.value!r} needs an accelerator; device is {device}")
    before = current_mode(pipeline)
    if before != mode and before in OFFLOAD_MODES:
        # accelerate puts weights back where they were (sequential offload restores them from its CPU copy).
        pipeline.remove_all_hooks()
    if mode not in OFFLOAD_MODES:
        pipeline.to(device)  # a no-op for weights already there; loads them after offload or a CPU-side load
    elif before != mode:
        offload = "enable_model_cpu_offload" if mode == MemoryMode.MODEL_OFFLOAD else "enable_sequential_cpu_offload"
        getattr(pipeline, offload)(device=device)
        if device.type == "cuda":
            # The weights left the device: hand the cached blocks back so probes and other processes see them.
            torch.cuda.empty_cache()
    _set_vae_tiling(pipeline.vae, enabled=mode != MemoryMode.RESIDENT)
    if before != mode:
        log.info("memory mode changed", extra={"from_mode": before.value, "to_mode": mode.value})


def _set_vae_tiling(vae: Any, *, enabled: bool) -> None:
    # AutoencoderKLMagvit (diffusers 0.42) has both; slicing only matters for batches > 1 but costs nothing.
    if enabled:
        vae.enable_tiling()
        vae.enable_slicing()
    else:
        vae.disable_tiling()
        vae.disable_slicing()


def _modules(pipeline: Any) -> list[torch.nn.Module]:
    return [c for c in pipeline.components.values() if isinstance(c, torch.nn.Module)]
