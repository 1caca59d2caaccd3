"""Whether the GPU pool takes a tenant's new job, from its queue as the view sees it. Pure. (How long the job would
wait: `consumer.api.submission.wait_estimate`; where a refused job may go instead: `consumer.core.degrade`.)

A tenant's own backlog counts against the tenant's own limits; other tenants' backlogs never refuse it while it is
within its fair share. In order:

1. **The tenant's limits.** Refused with `queue_full` when the tenant has `tenant_max_queued` jobs queued in the lanes
   the new job waits behind (its interactive ones for an interactive job, all for a bulk one), and with
   `wait_too_long` when the job's own estimate (its tenant's jobs ahead, one job per round of each other tenant with
   work queued, jobs rendering; see `wait_estimate`) is over `tenant_max_wait_s`.
2. **The pool's limits.** The pool is full when `max_queued` jobs of every tenant are queued in those lanes
   (`queue_full`), or when they would take longer than `max_wait_s` to start, first come first served
   (`wait_too_long`). Even then a tenant **within its fair share** gets in; one at or over it is refused. The share
   is the pool's capacity split evenly between the tenants with jobs queued in those lanes, the caller counted:
   `capacity / tenants`, and never under one job, where the capacity is `max_queued` jobs or, when fewer, as many as
   the active workers start within `max_wait_s`. So a tenant with nothing queued always gets in; the tenant furthest
   over its share is refused from the moment the pool is full, the others as each reaches its share (which shrinks
   as more tenants queue), and it stays refused longest (a tenant's count falls by one job per round).
   `Retry-After`: the earlier of "the pool has room" and "the tenant is back under its share".

Lanes (`consumer.core.priority_lanes`): a bulk backlog never sheds an interactive job, since workers take interactive
work first; a bulk job waits behind both lanes, so both count for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from consumer.api.submission.wait_estimate import QueueStats, estimated_wait_s, queued_ahead, tenants_waiting
from consumer.core.priority_lanes import Lane

__all__ = ["Limits", "Shed", "shed", "template_full"]

_MAX_RETRY_AFTER_S = 300


@dataclass(frozen=True)
class Limits:
    """The GPU pool's limits and each tenant's (`VIDGEN_API_*`), and the bulk lane's share period."""

    max_queued: int
    max_wait_s: float
    tenant_max_queued: int
    tenant_max_wait_s: float
    bulk_period: int | None = None  # `LanePolicy(VIDGEN_BULK_MIN_SHARE).period`


@dataclass(frozen=True)
class Shed:
    """Refuse the job: why (`queue_full` or `wait_too_long`) and when to try again."""

    reason: str
    message: str
    retry_after_s: int


def shed(stats: QueueStats, *, tenant: str, lane: Lane, limits: Limits) -> Shed | None:
    """None to accept `tenant`'s job of `lane`; else a Shed. Checked before anything is uploaded or published."""
    own = stats.tenant(tenant).ahead(lane)
    which = "" if lane == "bulk" else "interactive "
    # One round of the workers' round-robin: a job of each tenant waiting, at one per service time per worker.
    round_s = tenants_waiting(stats, tenant, lane) * stats.service_s / max(stats.workers_active, 1)
    if own >= limits.tenant_max_queued:
        return Shed(
            "queue_full",
            f"you have {own} {which}jobs queued (the limit per tenant is {limits.tenant_max_queued}); try again later",
            _retry_after((own - limits.tenant_max_queued + 1) * round_s),
        )
    wait = estimated_wait_s(stats, tenant, lane, bulk_period=limits.bulk_period)
    if wait is not None and wait > limits.tenant_max_wait_s:
        return Shed(
            "wait_too_long",
            f"the estimated wait of your job is {wait:.0f} s (the limit per tenant is {limits.tenant_max_wait_s:g} "
            "s); try again later",
            _retry_after(wait - limits.tenant_max_wait_s),
        )
    return _over_share(stats, tenant=tenant, lane=lane, limits=limits, round_s=round_s)


def _over_share(stats: QueueStats, *, tenant: str, lane: Lane, limits: Limits, round_s: float) -> Shed | None:
    """None unless the pool is full and `tenant` holds at least its fair share of it."""
    total = queued_ahead(stats, lane)
    which = "" if lane == "bulk" else "interactive "
    capacity = float(limits.max_queued)
    full: tuple[str, str, float] | None = None  # reason, what is full, seconds until it has room
    if total >= limits.max_queued:
        drain_s = stats.service_s / max(stats.workers_active, 1)  # one job leaves the queue per service time per worker
        detail = f"{total} {which}jobs are queued (the limit is {limits.max_queued})"
        full = ("queue_full", detail, (total - limits.max_queued + 1) * drain_s)
    if stats.workers_active >= 1:
        capacity = min(capacity, limits.max_wait_s * stats.workers_active / stats.service_s - stats.in_progress)
        backlog_s = (total + stats.in_progress) / stats.workers_active * stats.service_s
        if full is None and backlog_s > limits.max_wait_s:
            detail = f"the {which}jobs queued take {backlog_s:.0f} s to start (the limit is {limits.max_wait_s:g} s)"
            full = ("wait_too_long", detail, backlog_s - limits.max_wait_s)
    if full is None:
        return None
    share = max(1.0, capacity / tenants_waiting(stats, tenant, lane))
    own = stats.tenant(tenant).ahead(lane)
    if own < share:
        return None  # within its share: in, however full the pool
    reason, detail, pool_s = full
    back_under_s = (own - math.ceil(share) + 1) * round_s
    return Shed(
        reason,
        f"{detail} and {own} of them are yours, at or over your fair share of {share:.3g}; try again later",
        _retry_after(min(pool_s, back_under_s)),
    )


def template_full(stats: QueueStats, *, tenant: str, max_queued: int) -> bool:
    """The template pool takes no more of `tenant`'s jobs: `max_queued` jobs wait for it and the tenant holds at least
    its fair share of them (`max_queued` / the tenants with jobs queued there, the caller counted, at least one)."""
    if stats.template_queued < max_queued:
        return False
    others = sum(1 for name, jobs in stats.tenants.items() if name != tenant and jobs.template_queued > 0)
    return stats.tenant(tenant).template_queued >= max(1.0, max_queued / (others + 1))


def _retry_after(seconds: float) -> int:
    return min(_MAX_RETRY_AFTER_S, max(1, math.ceil(seconds)))
