"""Memory modes of the pipeline, from the fastest and hungriest to the slowest and most frugal. Pure.

The modes are cumulative: each keeps the savings of the one before it (an offloaded pipeline still tiles its VAE),
so `more_frugal` is a strict downgrade and the estimates are ordered the same way.

    resident            every component on the device: fastest
    vae_tiling          resident, VAE decodes/encodes 512x512 tiles: caps the VAE's activations, which dominate
                        at high resolution (20+ KiB per pixel untiled in bf16)
    model_offload       + `enable_model_cpu_offload`: one whole component on the device at a time
    sequential_offload  + `enable_sequential_cpu_offload`: one layer at a time (slow: weights stream every step)

accelerate's offload hooks move weights between host and an *accelerator*; on a CPU-only worker there is nothing to
offload to, so only the first two modes apply there (`supported_modes`). Putting a pipeline in a mode is the
renderer's business (`consumer/render/offload.py`).
"""

from __future__ import annotations

import enum

__all__ = ["MODES", "OFFLOAD_MODES", "MemoryMode", "more_frugal", "supported_modes"]


class MemoryMode(enum.StrEnum):
    RESIDENT = "resident"
    VAE_TILING = "vae_tiling"
    MODEL_OFFLOAD = "model_offload"
    SEQUENTIAL_OFFLOAD = "sequential_offload"


MODES: tuple[MemoryMode, ...] = tuple(MemoryMode)  # definition order is the hunger order
OFFLOAD_MODES = frozenset({MemoryMode.MODEL_OFFLOAD, MemoryMode.SEQUENTIAL_OFFLOAD})


def more_frugal(mode: MemoryMode) -> MemoryMode | None:
    """The next mode down (the one to retry in after an out-of-memory error); None past the most frugal."""
    index = MODES.index(mode)
    return MODES[index + 1] if index + 1 < len(MODES) else None


def supported_modes(device_type: str) -> tuple[MemoryMode, ...]:
    """The modes a device of this type (`torch.device.type`: "cpu", "cuda"...) can run."""
    if device_type == "cpu":
        return tuple(mode for mode in MODES if mode not in OFFLOAD_MODES)
    return MODES
