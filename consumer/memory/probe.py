"""How much memory the device has: one reading per call, behind a small protocol so admission never knows where
the numbers come from (CUDA, a configured budget on a CPU machine, or a script in tests)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

__all__ = ["CpuBudgetProbe", "CudaProbe", "MemoryProbe", "MemoryReading", "ScriptedProbe", "process_rss_bytes"]


@dataclass(frozen=True)
class MemoryReading:
    free_bytes: int
    total_bytes: int
    device: str


class MemoryProbe(Protocol):
    def read(self) -> MemoryReading: ...


class CudaProbe:
    """Free and total memory of one CUDA device, as the driver sees it (all processes, not only this one), plus
    what this process's caching allocator holds unused, which our next render reuses.

    `backend="torch"` uses torch.cuda.mem_get_info (creates a CUDA context on first use; MIG-aware).
    `backend="nvml"` uses nvidia-ml-py if installed: no CUDA context, so it works before the model loads, but it
    reports the whole physical GPU under MIG.
    """

    def __init__(self, device_index: int = 0, *, backend: str = "torch") -> None:
        if backend not in ("torch", "nvml"):
            raise ValueError(f"unknown backend {backend!r}")
        self._index = device_index
        self._nvml: Any = None
        if backend == "nvml":
            self._nvml = importlib.import_module("pynvml")  # optional dependency: nvidia-ml-py
            self._nvml.nvmlInit()

    def read(self) -> MemoryReading:
        device = f"cuda:{self._index}"
        if self._nvml is not None:
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._nvml.nvmlDeviceGetHandleByIndex(self._index))
            free, total = int(info.free), int(info.total)
        else:
            free, total = torch.cuda.mem_get_info(self._index)
        return MemoryReading(free + self._cached_unused(), total, device)

    def _cached_unused(self) -> int:
        """Blocks torch's caching allocator keeps after a render: used to the driver, free to our next render."""
        if not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # nvml probes must not create a context
            return 0
        return max(0, torch.cuda.memory_reserved(self._index) - torch.cuda.memory_allocated(self._index))


class CpuBudgetProbe:
    """A configured memory budget for machines without a GPU, so the same admission logic runs there.

    used = used_fn() (normally the estimates of renders admitted and not finished) + rss_fn() if given. Process RSS
    includes the loaded model, which every estimate also counts: with rss_fn, size the budget to cover both.
    """

    def __init__(
        self,
        budget_bytes: int,
        used_fn: Callable[[], int] = lambda: 0,
        *,
        rss_fn: Callable[[], int] | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be positive")
        self._budget = budget_bytes
        self._used_fn = used_fn
        self._rss_fn = rss_fn

    def read(self) -> MemoryReading:
        used = self._used_fn() + (self._rss_fn() if self._rss_fn is not None else 0)
        return MemoryReading(max(self._budget - used, 0), self._budget, "cpu")


class ScriptedProbe:
    """For tests and benchmarks: plays back readings in order (the last one repeats) or whatever `set` put there."""

    def __init__(self, readings: MemoryReading | Iterable[MemoryReading]) -> None:
        self._readings = [readings] if isinstance(readings, MemoryReading) else list(readings)
        if not self._readings:
            raise ValueError("a scripted probe needs at least one reading")
        self.reads = 0

    def set(self, *, free_bytes: int) -> None:
        self._readings = [replace(self._readings[-1], free_bytes=free_bytes)]

    def read(self) -> MemoryReading:
        self.reads += 1
        return self._readings.pop(0) if len(self._readings) > 1 else self._readings[0]


def process_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unavailable). A ready-made `rss_fn`."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
