"""Memory: probe the device, estimate a render's peak, pick a memory mode and admit work only while it fits.

Pure except `probe` (reads the device) and `modes.apply_mode` (moves weights): admission and estimates are plain
arithmetic, unit-tested without a GPU.
"""

from consumer.memory.admission import Admit, Decision, Reject, SafetyMargin, Wait, decide, usable_bytes
from consumer.memory.estimate import MemoryEstimate, estimate, estimate_bytes, estimate_per_mode, latent_tokens
from consumer.memory.modes import (
    MODES,
    MemoryMode,
    apply_mode,
    current_mode,
    more_frugal,
    supported_modes,
)
from consumer.memory.probe import (
    CpuBudgetProbe,
    CudaProbe,
    MemoryProbe,
    MemoryReading,
    ScriptedProbe,
    process_rss_bytes,
)
from consumer.memory.profile import EASYANIMATE_V51_7B, ModelMemoryProfile, module_bytes

__all__ = [
    "EASYANIMATE_V51_7B",
    "MODES",
    "Admit",
    "CpuBudgetProbe",
    "CudaProbe",
    "Decision",
    "MemoryEstimate",
    "MemoryMode",
    "MemoryProbe",
    "MemoryReading",
    "ModelMemoryProfile",
    "Reject",
    "SafetyMargin",
    "ScriptedProbe",
    "Wait",
    "apply_mode",
    "current_mode",
    "decide",
    "estimate",
    "estimate_bytes",
    "estimate_per_mode",
    "latent_tokens",
    "module_bytes",
    "more_frugal",
    "process_rss_bytes",
    "supported_modes",
    "usable_bytes",
]
