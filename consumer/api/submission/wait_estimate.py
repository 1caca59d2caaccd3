"""How long a tenant's new job waits for the GPU pool, from the queue as the view sees it. Pure. (Whether the pool
takes the job: `consumer.api.submission.shedding`.)

The estimate follows how the workers hand out work (`consumer.core.pending`, `consumer.core.quotas`,
`consumer.core.priority_lanes`): interactive jobs first, and within a lane **round-robin across tenants**, one job of
each tenant with work queued per round. So a job of tenant A that has `k` of its own jobs queued ahead of it starts in
round `k + 1`, after at most `k + 1` jobs of every other tenant with work queued (fewer when that tenant has fewer):

    jobs ahead = k + sum over the other tenants T of min(queued of T, k + 1)

and then waits for a worker: `(jobs ahead + jobs rendering) / workers seen active x the mean service time`. Another
tenant's backlog adds at most one job per round, however long it is.

A bulk job waits behind the bulk lane in the same way, and behind interactive jobs (anyone's): at most
`period - 1` of them per bulk job started, since a worker starts a bulk job at least once in `period` renders while
both lanes wait (`VIDGEN_BULK_MIN_SHARE`, `LanePolicy.period`; None: strict priority, every interactive job).

The round-robin is each worker's, over the records it has fetched; with several workers and partitions it is the
pool's behaviour on average, not job by job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from consumer.core.priority_lanes import Lane

__all__ = ["NO_JOBS", "QueueStats", "TenantQueue", "estimated_wait_s", "jobs_ahead", "queued_ahead", "tenants_waiting"]


@dataclass(frozen=True)
class TenantQueue:
    """One tenant's jobs: queued for the GPU pool (both lanes; of them, the bulk lane's), rendering there, and queued
    for the template pool."""

    queued: int = 0
    bulk_queued: int = 0
    in_progress: int = 0
    template_queued: int = 0

    def ahead(self, lane: Lane) -> int:
        """Of the tenant's jobs queued for the GPU pool, those a new job of `lane` waits behind: every one for bulk,
        the interactive ones for interactive."""
        return self.queued if lane == "bulk" else self.queued - self.bulk_queued


NO_JOBS = TenantQueue()


@dataclass(frozen=True)
class QueueStats:
    """The GPU pool's queue, in all and per tenant; and how long the template pool's is."""

    queued: int  # every lane's, every tenant's
    in_progress: int  # every lane's: a job rendering holds a worker, whatever its lane or tenant
    workers_active: int
    service_s: float  # mean seconds a worker spends on one job (recent renders, or the configured prior)
    bulk_queued: int = 0  # of `queued`, the bulk lane's
    template_queued: int = 0
    last_active: datetime | None = None  # the latest progress event or result of a GPU worker
    waiting_since: datetime | None = None  # when the oldest job queued for the GPU pool arrived
    tenants: Mapping[str, TenantQueue] = field(default_factory=dict)  # the tenants with jobs queued or rendering

    def tenant(self, tenant: str) -> TenantQueue:
        return self.tenants.get(tenant, NO_JOBS)


def queued_ahead(stats: QueueStats, lane: Lane) -> int:
    """Jobs queued, every tenant's, in the lanes a job of `lane` waits behind: all for bulk, interactive for
    interactive."""
    return stats.queued if lane == "bulk" else stats.queued - stats.bulk_queued


def tenants_waiting(stats: QueueStats, tenant: str, lane: Lane) -> int:
    """Tenants with jobs queued in the lanes a job of `lane` waits behind, `tenant` counted even without any."""
    others = sum(1 for name, jobs in stats.tenants.items() if name != tenant and jobs.ahead(lane) > 0)
    return others + 1


def jobs_ahead(stats: QueueStats, tenant: str, lane: Lane, *, bulk_period: int | None) -> int:
    """Jobs that start before a job of `lane` that `tenant` submits now (see the module's docstring)."""
    mine = stats.tenant(tenant)
    if lane == "interactive":
        own = mine.ahead("interactive")
        return own + _one_per_round(stats, tenant, "interactive", rounds=own + 1)
    own = mine.bulk_queued
    bulk = own + _one_per_round(stats, tenant, "bulk", rounds=own + 1)
    interactive = stats.queued - stats.bulk_queued
    if bulk_period is not None:
        interactive = min(interactive, (bulk + 1) * (bulk_period - 1))
    return bulk + interactive


def _one_per_round(stats: QueueStats, tenant: str, lane: Lane, *, rounds: int) -> int:
    """Jobs of the other tenants served in `rounds` rounds of `lane`: one each per round, up to what they have."""
    total = 0
    for name, jobs in stats.tenants.items():
        if name != tenant:
            queued = jobs.bulk_queued if lane == "bulk" else jobs.ahead("interactive")
            total += min(queued, rounds)
    return total


def estimated_wait_s(stats: QueueStats, tenant: str, lane: Lane, *, bulk_period: int | None) -> float | None:
    """Seconds before a job of `lane` that `tenant` submits now starts; None when no worker has been seen (nothing to
    estimate with)."""
    if stats.workers_active < 1:
        return None
    rounds = (jobs_ahead(stats, tenant, lane, bulk_period=bulk_period) + stats.in_progress) / stats.workers_active
    return round(rounds * stats.service_s, 1)
