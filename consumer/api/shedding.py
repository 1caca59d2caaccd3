"""Whether the GPU pool can take a new job, from its queue as the view sees it. Pure. (Where a job goes when it
cannot: `consumer.core.degrade`.)

The estimate: a job submitted now starts once the jobs ahead of it (queued, plus those rendering, which hold a
worker) have been served by the workers seen active, each taking the mean service time of recent renders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

__all__ = ["QueueStats", "Shed", "estimated_wait_s", "shed"]

_MAX_RETRY_AFTER_S = 300


@dataclass(frozen=True)
class QueueStats:
    """The GPU pool's queue; and how long the template pool's is."""

    queued: int
    in_progress: int
    workers_active: int
    service_s: float  # mean seconds a worker spends on one job (recent renders, or the configured prior)
    template_queued: int = 0
    last_active: datetime | None = None  # the latest progress event or result of a GPU worker
    waiting_since: datetime | None = None  # when the oldest job queued for the GPU pool arrived


@dataclass(frozen=True)
class Shed:
    """Refuse the job: why (`queue_full` or `wait_too_long`) and when to try again."""

    reason: str
    message: str
    retry_after_s: int


def estimated_wait_s(stats: QueueStats) -> float | None:
    """Seconds before a job submitted now starts; None when no worker has been seen (nothing to estimate with)."""
    if stats.workers_active < 1:
        return None
    rounds = (stats.queued + stats.in_progress) / stats.workers_active
    return round(rounds * stats.service_s, 1)


def shed(stats: QueueStats, *, max_queued: int, max_wait_s: float) -> Shed | None:
    """None to accept; else a Shed. Checked before anything is uploaded or published."""
    # Jobs leave the queue at one per service time per worker (one per service time when none is seen).
    drain_s = stats.service_s / max(stats.workers_active, 1)
    if stats.queued >= max_queued:
        excess = stats.queued - max_queued + 1
        return Shed(
            "queue_full",
            f"{stats.queued} jobs are queued (the limit is {max_queued}); try again later",
            _retry_after(excess * drain_s),
        )
    wait = estimated_wait_s(stats)
    if wait is not None and wait > max_wait_s:
        return Shed(
            "wait_too_long",
            f"the estimated wait is {wait:.0f} s (the limit is {max_wait_s:g} s); try again later",
            _retry_after(wait - max_wait_s),
        )
    return None


def _retry_after(seconds: float) -> int:
    return min(_MAX_RETRY_AFTER_S, max(1, math.ceil(seconds)))
