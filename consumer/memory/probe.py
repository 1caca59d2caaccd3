"""How much memory the device has: one reading per call, behind a small protocol so admission never knows where
the numbers come from (CUDA, a budget on a CPU machine, or a script in tests). On a CPU machine the budget is
configured or derived from the memory limit the kernel enforces (`memory_limit_bytes`, `cpu_budget_bytes`)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch

from consumer.memory.admission import MemoryReading

__all__ = [
    "CpuBudgetProbe",
    "CudaProbe",
    "MemoryProbe",
    "ScriptedProbe",
    "cpu_budget_bytes",
    "memory_limit_bytes",
    "process_rss_bytes",
]


class MemoryProbe(Protocol):
    def read(self) -> MemoryReading: ...


class CudaProbe:
    """Free and total memory of one CUDA device, as the driver sees it (all processes, not only this one), plus
    what this process's caching allocator holds unused, which our next render reuses.

    `backend="torch"` uses torch.cuda.mem_get_info (creates a CUDA context on first use; MIG-aware).
    `backend="nvml"` uses nvidia-ml-py if installed: its readings create no CUDA context. NVML numbers every GPU of
    the machine and ignores CUDA_VISIBLE_DEVICES (which `vidgen run --gpus` sets per worker), so the device is found
    by its UUID as CUDA reports it (a MIG instance by its MIG UUID), never by its index.
    """

    def __init__(self, device_index: int = 0, *, backend: str = "torch") -> None:
        if backend not in ("torch", "nvml"):
            raise ValueError(f"unknown backend {backend!r}")
        self._index = device_index
        self._nvml: Any = None
        self._handle: Any = None
        if backend == "nvml":
            self._nvml = importlib.import_module("pynvml")  # optional dependency: nvidia-ml-py
            self._nvml.nvmlInit()
            self._handle = _nvml_handle(self._nvml, str(torch.cuda.get_device_properties(device_index).uuid))

    def read(self) -> MemoryReading:
        device = f"cuda:{self._index}"
        if self._nvml is not None:
            info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            free, total = int(info.free), int(info.total)
        else:
            free, total = torch.cuda.mem_get_info(self._index)
        return MemoryReading(free + self._cached_unused(), total, device)

    def _cached_unused(self) -> int:
        """Blocks torch's caching allocator keeps after a render: used to the driver, free to our next render."""
        if not torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # nvml probes must not create a context
            return 0
        return max(0, torch.cuda.memory_reserved(self._index) - torch.cuda.memory_allocated(self._index))


def _nvml_handle(nvml: Any, device_uuid: str) -> Any:
    """The NVML handle of the device CUDA calls `device_uuid`: a whole GPU (`GPU-<uuid>`), else a MIG instance."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{device_uuid}".encode("ascii"))
    except nvml.NVMLError:
        return nvml.nvmlDeviceGetHandleByUUID(f"MIG-{device_uuid}".encode("ascii"))


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


def memory_limit_bytes(cgroup_root: Path, proc_root: Path = Path("/proc")) -> int:
    """The memory this process may use before the kernel kills it: the tightest cgroup limit on its path (v2
    `memory.max`, v1 `memory.limit_in_bytes`, each cgroup up to the root), else total memory; never more than
    total memory, so "max" and v1's unlimited 2^63 - 4096 count as no limit."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # what /proc/meminfo calls MemTotal
    try:
        own = (proc_root / "self" / "cgroup").read_text(encoding="utf-8")
    except OSError:  # not Linux: no cgroups
        return total
    candidates = [
        *_limits_up_from(cgroup_root, _cgroup_path(own, None), "memory.max"),
        *_limits_up_from(cgroup_root / "memory", _cgroup_path(own, "memory"), "memory.limit_in_bytes"),
    ]
    return min([total, *candidates])


def cpu_budget_bytes(limit_bytes: int, *, resident_bytes: int, weights_bytes: int, reserved_bytes: int) -> int:
    """What renders may plan on under a memory limit: the limit less what the process holds once its model is
    loaded (`resident_bytes`, RSS) except the weights, which every estimate counts again, less `reserved_bytes`
    set aside for other work. At least one byte: a worker already over its limit admits nothing."""
    held_beyond_weights = max(resident_bytes - weights_bytes, 0)
    return max(limit_bytes - held_beyond_weights - reserved_bytes, 1)


def _cgroup_path(text: str, controller: str | None) -> str | None:
    """This process's cgroup (from /proc/self/cgroup) in the v1 hierarchy of `controller`, or with None in the
    v2 hierarchy (the line "0::/path")."""
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (controller is None and number == "0" and not controllers) or controller in controllers.split(","):
            return path
    return None


def _limits_up_from(root: Path, path: str | None, filename: str) -> list[int]:
    """Limits of the cgroup at `path` under `root` and of each of its ancestors that exists there. A container
    sees its own cgroup at the root while its path may still name the host's: walking up finds it either way."""
    if path is None:
        return []
    limits = []
    directory = root / path.lstrip("/")
    for candidate in (directory, *directory.parents):
        if not candidate.is_relative_to(root):
            break
        try:
            value = (candidate / filename).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if value.isdigit():  # not "max", v2's no limit
            limits.append(int(value))
    return limits
