"""The worker's memory gate: a job waits here, with the worker's partitions paused, until its render fits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from consumer.memory.admission import Admit, MemoryReading, Reject, SafetyMargin, Wait, decide
from consumer.memory.estimate import estimate_per_mode
from consumer.memory.modes import MemoryMode
from consumer.memory.profile import ModelMemoryProfile
from consumer.telemetry.worker_metrics import Metrics
from schemas.events import VideoRequest

if TYPE_CHECKING:  # the probes' module imports torch; the gate only reads through the protocol
    from consumer.memory.probe import MemoryProbe

__all__ = ["MemoryGate"]

log = logging.getLogger(__name__)

_RECHECK_S = 0.25


class MemoryGate:
    """Admission by free device memory. While a job waits, `waiting` is true and the worker fetches nothing.

    `reserved` counts the estimates of admitted jobs until their renders end, so two jobs admitted back to back cannot
    both plan on the same free bytes. `held_bytes` reports weights the probe already sees as used (a resident
    model on the GPU), which every estimate also includes.
    """

    def __init__(
        self,
        probe: MemoryProbe,
        profile: Callable[[], ModelMemoryProfile],
        *,
        margin: SafetyMargin,
        forced: MemoryMode | None,
        allowed: tuple[MemoryMode, ...],
        held_bytes: Callable[[], int],
        metrics: Metrics,
    ) -> None:
        self._probe = probe
        self._profile = profile
        self._margin = margin
        self._forced = forced
        self._allowed = allowed
        self._held_bytes = held_bytes
        self._metrics = metrics
        self._reserved: dict[int, int] = {}
        self._waiters = 0
        self._freed = asyncio.Event()  # set (and replaced) whenever a reservation ends

    @property
    def waiting(self) -> bool:
        return self._waiters > 0

    def read(self) -> MemoryReading:
        reading = self._probe.read()
        self._metrics.vram_free.set(reading.free_bytes)
        self._metrics.vram_total.set(reading.total_bytes)
        return reading

    async def admit(self, request: VideoRequest, stop: Callable[[], bool]) -> Admit | Reject | None:
        """Admit (and reserve) once the request fits; Reject when it never can here; None when `stop()` turned
        true while waiting (shutdown, revocation): the job is abandoned uncommitted."""
        estimates = estimate_per_mode(
            request.width, request.height, request.num_frames, request.guidance_scale, self._profile()
        )
        waited = False
        last = time.monotonic()
        try:
            while True:
                decision = decide(
                    self.read(),
                    estimates,
                    reserved_bytes=sum(self._reserved.values()),
                    held_bytes=self._held_bytes(),
                    margin=self._margin,
                    forced=self._forced,
                    allowed=self._allowed,
                )
                if not isinstance(decision, Wait):
                    break
                if not waited:
                    waited = True
                    self._set_waiters(+1)
                    log.info("request %s waits for memory: %s", request.request_id, decision.reason)
                if stop():
                    return None
                # Re-read when a reservation ends (the job before rendered), or after a while for other changes.
                freed = self._freed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), _RECHECK_S)
                now = time.monotonic()
                self._metrics.admission_wait_seconds.inc(now - last)  # counted as it accrues, for live dashboards
                last = now
        finally:
            if waited:
                self._set_waiters(-1)
        if isinstance(decision, Admit):
            self._reserved[id(request)] = decision.estimate
            self._metrics.job_estimate_bytes.set(sum(self._reserved.values()))
        return decision

    def _set_waiters(self, change: int) -> None:
        self._waiters += change
        self._metrics.memory_waiting.set(self._waiters)

    def release(self, request: VideoRequest) -> None:
        """End a job's reservation (idempotent): called when its render ends, not when its result is out."""
        if self._reserved.pop(id(request), None) is None:
            return
        self._metrics.job_estimate_bytes.set(sum(self._reserved.values()))
        self._freed.set()
        self._freed = asyncio.Event()
