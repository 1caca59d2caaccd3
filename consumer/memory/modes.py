"""Memory modes of the pipeline, from the fastest and hungriest to the slowest and most frugal.

The modes are cumulative: each keeps the savings of the one before it (an offloaded pipeline still tiles its VAE),
so `more_frugal` is a strict downgrade and the estimates are ordered the same way.

    resident            every component on the device: fastest
    vae_tiling          resident, VAE decodes/encodes 512x512 tiles: caps the VAE's activations, which dominate
                        at high resolution (20+ KiB per pixel untiled in bf16)
    model_offload       + `enable_model_cpu_offload`: one whole component on the device at a time
    sequential_offload  + `enable_sequential_cpu_offload`: one layer at a time (slow: weights stream every step)

accelerate's offload hooks move weights between host and an *accelerator*; on a CPU-only worker there is nothing to
offload to, so only the first two modes apply there (`supported_modes`).
"""

from __future__ import annotations

import enum
import logging
from typing import Any

import torch

from consumer.errors import ModeUnsupported

__all__ = [
    "MODES",
    "MemoryMode",
    "apply_mode",
    "current_mode",
    "more_frugal",
    "supported_modes",
]

log = logging.getLogger(__name__)


class MemoryMode(enum.StrEnum):
    RESIDENT = "resident"
    VAE_TILING = "vae_tiling"
    MODEL_OFFLOAD = "model_offload"
    SEQUENTIAL_OFFLOAD = "sequential_offload"


MODES: tuple[MemoryMode, ...] = tuple(MemoryMode)  # definition order is the hunger order
_OFFLOAD = frozenset({MemoryMode.MODEL_OFFLOAD, MemoryMode.SEQUENTIAL_OFFLOAD})


def more_frugal(mode: MemoryMode) -> MemoryMode | None:
    """The next mode down (the one to retry in after an out-of-memory error); None past the most frugal."""
    index = MODES.index(mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None


def supported_modes(device: torch.device | str) -> tuple[MemoryMode, ...]:
    if torch.device(device).type == "cpu":
        return tuple(mode for mode in MODES if mode not in _OFFLOAD)
    return MODES


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
    if mode not in supported_modes(device):
        raise ModeUnsupported(f"memory mode {mode.value!r} needs an accelerator; device is {device}")
    before = current_mode(pipeline)
    if before != mode and before in _OFFLOAD:
        # accelerate puts weights back where they were (sequential offload restores them from its CPU copy).
        pipeline.remove_all_hooks()
    if mode not in _OFFLOAD:
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
