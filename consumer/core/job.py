"""One fetched request on its way through the worker, the signal that stops it, and what the core reads of the Kafka
record it came in. Pure: the record is described by a protocol that aiokafka's `ConsumerRecord` satisfies, so nothing
here imports a client."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from consumer.core.lifecycle import Lifecycle
from consumer.core.retries import Delivery
from consumer.errors import Expired, VidgenError
from schemas.events import VideoRequest

__all__ = ["Headers", "Job", "Record", "StopSignal", "StopStage", "past_deadline"]

StopStage = Literal["queued", "rendering", "late"]
"""Where a cancel found its job: before its render started, during it, or past it (then the job is left to finish)."""

Headers = list[tuple[str, bytes]]


class Record(Protocol):
    """A consumed Kafka record (aiokafka's `ConsumerRecord[bytes, bytes]`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # milliseconds since the epoch
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class StopSignal:
    """One job's stop request. The scheduler sets it on the event loop (a cancel); the job checks it before each stage
    of its work, awaits it while it waits for the model, and the render thread reads it between denoising steps (a
    plain attribute read, so no lock is needed). `stopped_in` records where the job noticed it.

    `draining` is the scheduler's other word to a job: the worker shuts down, so a job still waiting for device memory
    gives up unanswered (its record is read again); a job past that finishes and is answered."""

    def __init__(self) -> None:
        self._reason: VidgenError | None = None
        self._requested = asyncio.Event()
        self.stopped_in: StopStage | None = None
        self.draining = False

    @property
    def requested(self) -> bool:
        return self._reason is not None

    def request(self, reason: VidgenError) -> None:
        """Ask the job to stop with `reason` as its answer (the first request wins). On the event loop."""
        if self._reason is None:
            self._reason = reason
            self._requested.set()

    def drain(self) -> None:
        """Shutdown: stop waiting for device memory (see `draining`). On the event loop."""
        self.draining = True

    async def wait(self) -> None:
        """Until a stop is requested."""
        await self._requested.wait()

    async def acquire(self, lock: asyncio.Lock) -> None:
        """Take `lock` (the model's), unless a stop is requested first: then raise its reason at once, without the
        lock and without waiting for whoever holds it."""
        taking = asyncio.ensure_future(lock.acquire())
        stopping = asyncio.ensure_future(self.wait())
        try:
            await asyncio.wait((taking, stopping), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if not taking.cancel():  # it had taken the lock already
                lock.release()
            raise
        finally:
            stopping.cancel()
        if taking.cancel():  # still waiting, so the stop came first (a cancelled acquire never holds the lock)
            raise self.stopped("queued")

    def check(self, where: StopStage) -> None:
        """Raise the requested reason, noting `where`; nothing when no stop was requested."""
        if self._reason is not None:
            raise self.stopped(where)

    def stopped(self, where: StopStage) -> VidgenError:
        """The requested reason as a fresh exception of its kind, noting `where` the job stopped."""
        reason = self._reason
        if reason is None:
            raise RuntimeError("no stop was requested")
        self.stopped_in = where
        return type(reason)(reason.message, code=reason.code)


def past_deadline(deadline: datetime | None, *, now: datetime) -> Expired | None:
    """The answer for a request whose own `deadline` passed before its render started; None while it has not."""
    if deadline is None or now <= deadline:
        return None
    late_s = (now - deadline).total_seconds()
    return Expired(f"the request's deadline ({deadline.isoformat()}) passed {late_s:.1f} s before its render started")


@dataclass(frozen=True)
class Job:
    """A parsed request, from its fetch until it is answered. `tp` is its record's topic partition (a key of the
    consume loop's bookkeeping); `delivery` is the retry state its headers carried, read once at intake; `stop` is how
    the scheduler asks it to stop (a cancel); `lifecycle` is the phase it is in (`consumer.core.lifecycle`)."""

    tp: Hashable
    record: Record
    request: VideoRequest
    received_at: datetime
    delivery: Delivery = field(default_factory=Delivery)
    stop: StopSignal = field(default_factory=StopSignal, compare=False)
    lifecycle: Lifecycle = field(default_factory=Lifecycle, compare=False)

    @property
    def first_asked_at(self) -> datetime:
        """What `VIDGEN_TENANT_MAX_WAIT_S` is measured from: when the request first waited for its tenant's quota
        (a deferral brought it back), or this delivery."""
        since = self.delivery.waiting_since_ms
        if since is None:
            return self.received_at
        return min(datetime.fromtimestamp(since / 1000, UTC), self.received_at)
