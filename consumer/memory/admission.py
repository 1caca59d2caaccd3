"""Admission: may this request start now, in which memory mode, or must it wait, or can it never run here?

Pure: a probe reading, the bookkeeping of jobs already admitted and the request's estimates go in, a decision
comes out. The worker does the I/O (reading the probe, pausing partitions while it waits).

    usable    = total - margin                      margin = margin_bytes + margin_fraction * total
    mode      = the fastest allowed mode whose estimate <= usable  (none: Reject too_large_for_worker)
    available = min(free - margin, usable - reserved)
    Admit(mode) if estimate[mode] <= available, else Wait

`free` is what the device reports now (other processes, the CUDA context and running renders' current
allocations are already out of it); `reserved` is the sum of the peaks of renders this worker admitted and has not
finished, which bounds what they may still grow into. Taking the minimum keeps both promises. `held_bytes` is what
this worker already holds on the device that the estimate counts again (the weights of an idle resident pipeline):
it is added back to `free` so a loaded model does not block its own next render.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from consumer.errors import ModeUnsupported
from consumer.memory.modes import MODES, MemoryMode

__all__ = ["Admission", "Admit", "MemoryReading", "Reject", "SafetyMargin", "Wait", "decide", "usable_bytes"]

TOO_LARGE = "too_large_for_worker"


@dataclass(frozen=True)
class MemoryReading:
    """What a probe (`consumer/memory/probe.py`) read from the device."""

    free_bytes: int
    total_bytes: int
    device: str


@dataclass(frozen=True)
class SafetyMargin:
    """Memory never planned for. The defaults cover a CUDA context and cuBLAS/cuDNN workspaces (1 GiB) and the
    caching allocator's fragmentation (5% of the device)."""

    bytes: int = 1 << 30
    fraction: float = 0.05

    def of(self, total_bytes: int) -> int:
        return self.bytes + int(self.fraction * total_bytes)


@dataclass(frozen=True)
class Admit:
    mode: MemoryMode
    estimate: int


@dataclass(frozen=True)
class Wait:
    mode: MemoryMode  # the mode it would run in once memory frees up
    estimate: int
    reason: str


@dataclass(frozen=True)
class Reject:
    message: str
    code: str = TOO_LARGE


Admission = Admit | Wait | Reject


def usable_bytes(total_bytes: int, margin: SafetyMargin) -> int:
    return total_bytes - margin.of(total_bytes)


def decide(
    reading: MemoryReading,
    estimates: Mapping[MemoryMode, int],
    *,
    reserved_bytes: int = 0,
    held_bytes: int = 0,
    margin: SafetyMargin = SafetyMargin(),
    forced: MemoryMode | None = None,
    allowed: Iterable[MemoryMode] = MODES,
    subject: str | None = None,
) -> Admission:
    """Decide for one request. `forced` pins the mode (VIDGEN_MEMORY_MODE); `allowed` is what the device supports;
    `subject` says what the estimates are of where memory modes mean nothing to the requester ("for its frames").

    Raises ModeUnsupported when the forced mode is not allowed here: a configuration error, not the request's.
    """
    runnable = set(allowed)
    if forced is not None and forced not in runnable:
        raise ModeUnsupported(f"memory mode {forced.value!r} is forced but {reading.device} cannot run it")
    # A mode without an estimate is not a candidate; a forced one must have one.
    candidates = [forced] if forced is not None else [m for m in MODES if m in runnable and m in estimates]
    if not candidates or any(m not in estimates for m in candidates):
        raise ValueError(f"no estimate for {[m.value for m in candidates] or 'any allowed mode'}")
    usable = usable_bytes(reading.total_bytes, margin)
    mode = next((m for m in candidates if estimates[m] <= usable), None)
    if mode is None:
        smallest = min(candidates, key=lambda m: estimates[m])
        where = f"memory mode {forced.value!r}" if forced is not None else f"its most frugal mode ({smallest.value})"
        return Reject(
            f"needs {_gib(estimates[smallest])} {subject or 'in ' + where}; this worker's {reading.device} has "
            f"{_gib(usable)} usable of {_gib(reading.total_bytes)}"
        )
    need = estimates[mode]
    available = min(reading.free_bytes + held_bytes - margin.of(reading.total_bytes), usable - reserved_bytes)
    if need <= available:
        return Admit(mode, need)
    return Wait(
        mode,
        need,
        f"needs {_gib(need)} {subject or 'in memory mode ' + mode.value}; {_gib(max(available, 0))} available now "
        f"({_gib(reading.free_bytes)} free, {_gib(reserved_bytes)} reserved by running renders)",
    )


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"
