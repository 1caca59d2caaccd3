"""The worker's memory gate: a job waits here, with the worker's partitions paused, until its render fits.

`MemoryGate` admits a model's renders by device memory in a memory mode, each reservation ending with its render.
`JobMemoryGate` admits the template pool's jobs by the worker's own memory, each reservation lasting until the job
is answered: its frames stay in RAM while they are encoded and uploaded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from consumer.memory.admission import Admit, MemoryReading, Reject, SafetyMargin, Wait, decide
from consumer.memory.modes import MemoryMode
from consumer.telemetry.worker_metrics import Metrics
from schemas.events import VideoRequest

if TYPE_CHECKING:  # the probes' module imports torch; the gate only reads through the protocol
    from consumer.memory.probe import MemoryProbe

__all__ = ["Estimates", "JobMemoryGate", "MemoryGate"]

log = logging.getLogger(__name__)

_RECHECK_S = 0.25

Estimates = Callable[[VideoRequest], Mapping[MemoryMode, int]]
"""A request's peak memory in each memory mode it may run in."""


class MemoryGate:
    """Admission by free device memory. While a job waits, `waiting` is true and the worker fetches nothing.

    `reserved` counts the estimates of admitted jobs until their renders end, so two jobs admitted back to back cannot
    both plan on the same free bytes. `held_bytes` reports weights the probe already sees as used (a resident
    model on the GPU), which every estimate also includes.
    """

    renders_in_mode = True  # an admitted job renders in the memory mode admission chose
    _subject: str | None = None  # what the estimates are of, in messages; None: a render in a memory mode

    def __init__(
        self,
        probe: MemoryProbe,
        estimates: Estimates,
        *,
        margin: SafetyMargin,
        forced: MemoryMode | None,
        allowed: tuple[MemoryMode, ...],
        held_bytes: Callable[[], int],
        metrics: Metrics,
    ) -> None:
        self._probe = probe
        self._estimates = estimates
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
        estimates = self._estimates(request)
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
                    subject=self._subject,
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

    def render_ended(self, request: VideoRequest) -> None:
        """The job's render ended: its device memory is free for the next render, before its result is out."""
        self.release(request)

    def release(self, request: VideoRequest) -> None:
        """End a job's reservation (idempotent): at the latest when its attempt ends."""
        if self._reserved.pop(id(request), None) is None:
            return
        self._metrics.job_estimate_bytes.set(sum(self._reserved.values()))
        self._freed.set()
        self._freed = asyncio.Event()


class JobMemoryGate(MemoryGate):
    """The template pool's gate: a job is admitted by the worker's memory budget (a CPU budget probe) for its whole
    peak (`consumer.memory.template_estimate`), and keeps that reservation until it is answered, since its frames
    stay in RAM while they are encoded and uploaded. No memory modes: the renderer has no weights to place."""

    renders_in_mode = False
    _subject = "for its frames, encoder and start-image decode"

    def __init__(
        self, probe: MemoryProbe, estimate: Callable[[VideoRequest], int], *, margin: SafetyMargin, metrics: Metrics
    ) -> None:
        only = MemoryMode.RESIDENT  # the one candidate `decide` weighs; never applied to the renderer
        super().__init__(
            probe,
            lambda request: {only: estimate(request)},
            margin=margin,
            forced=None,
            allowed=(only,),
            held_bytes=lambda: 0,
            metrics=metrics,
        )

    def render_ended(self, request: VideoRequest) -> None:
        """Nothing freed yet: the reservation ends with the job (`release`)."""
