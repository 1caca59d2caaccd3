"""Whether the GPU pool can take a new job, from its queue as the view sees it. Pure. (Where a job goes when it
cannot: `consumer.core.degrade`.)

The estimate: a job submitted now starts once the jobs ahead of it (queued, plus those rendering, which hold a
worker) have been served by the workers seen active, each taking the mean service time of recent renders.

Lanes (`consumer.core.priority_lanes`): workers take interactive work first, so the jobs queued ahead of an interactive
job are the interactive ones only, and a bulk backlog neither sheds nor slows it; a bulk job is behind every job queued.
Both lanes' limits (`max_queued`, `max_wait_s`) count what is ahead of a job of that lane. (The bulk lane's starvation
share, a render in `1 / VIDGEN_BULK_MIN_SHARE` while both wait, is left out of the interactive estimate.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from consumer.core.priority_lanes import Lane

__all__ = ["QueueStats", "Shed", "estimated_wait_s", "queued_ahead", "shed"]

_MAX_RETRY_AFTER_S = 300


@dataclass(frozen=True)
class QueueStats:
    """The GPU pool's queue; and how long the template pool's is."""

    queued: int  # every lane's
    in_progress: int  # every lane's: a job rendering holds a worker, whatever its lane
    workers_active: int
    service_s: float  # mean seconds a worker spends on one job (recent renders, or the configured prior)
    bulk_queued: int = 0  # of `queued`, the bulk lane's
    template_queued: int = 0
    last_active: datetime | None = None  # the latest progress event or result of a GPU worker
    waiting_since: datetime | None = None  # when the oldest job queued for the GPU pool arrived


@dataclass(frozen=True)
class Shed:
    """Refuse the job: why (`queue_full` or `wait_too_long`) and when to try again."""

    reason: str
    message: str
    retry_after_s: int


def queued_ahead(stats: QueueStats, lane: Lane) -> int:
    """Jobs queued that a job of `lane` submitted now waits behind: every one for bulk, the interactive ones for
    interactive."""
    return stats.queued if lane == "bulk" else stats.queued - stats.bulk_queued


def estimated_wait_s(stats: QueueStats, lane: Lane) -> float | None:
    """Seconds before a job of `lane` submitted now starts; None when no worker has been seen (nothing to estimate
    with)."""
    if stats.workers_active < 1:
        return None
    rounds = (queued_ahead(stats, lane) + stats.in_progress) / stats.workers_active
    return round(rounds * stats.service_s, 1)


def shed(stats: QueueStats, *, lane: Lane, max_queued: int, max_wait_s: float) -> Shed | None:
    """None to accept a job of `lane`; else a Shed. Checked before anything is uploaded or published."""
    # Jobs leave the queue at one per service time per worker (one per service time when none is seen).
    drain_s = stats.service_s / max(stats.workers_active, 1)
    queued = queued_ahead(stats, lane)
    if queued >= max_queued:
        excess = queued - max_queued + 1
        which = "" if lane == "bulk" else "interactive "
        return Shed(
            "queue_full",
            f"{queued} {which}jobs are queued (the limit is {max_queued}); try again later",
            _retry_after(excess * drain_s),
        )
    wait = estimated_wait_s(stats, lane)
    if wait is not None and wait > max_wait_s:
        return Shed(
            "wait_too_long",
            f"the estimated wait is {wait:.0f} s (the limit is {max_wait_s:g} s); try again later",
            _retry_after(wait - max_wait_s),
        )
    return None


def _retry_after(seconds: float) -> int:
    return min(_MAX_RETRY_AFTER_S, max(1, math.ceil(seconds)))
