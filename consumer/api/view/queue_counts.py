"""The view's queue figures: jobs queued and in progress, by pool, lane and tenant, kept current job by job as the
view applies events (counted from the rows only when the file is opened or purged), so shedding, the wait estimate
and routing never count rows.

Figures are kept per pool: the GPU pool's (shedding, the wait estimate, whether the pool is down) and the template
pool's (jobs routed there, `degraded`); per lane (the accepted request's `priority`), since an interactive job waits
behind no bulk job queued; and per tenant, since the workers serve tenants round-robin
(`consumer.api.submission.wait_estimate`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from consumer.api.submission.wait_estimate import NO_JOBS, TenantQueue
from consumer.core.priority_lanes import LANES, Lane

__all__ = ["ACTIVE_KEYS", "QUEUES", "ActiveCounts", "JobSlot", "QueueState", "active_key", "pool_count"]

_TEMPLATE = "template:"  # prefix of the template pool's keys (then the bulk lane's)

JobSlot = tuple[str, str]
"""Where a job counts: its tenant and its `active_key`."""


def active_key(status: str, degraded: bool, lane: Lane) -> str:
    """The key of a job in the counts: its status, prefixed for the template pool's jobs and for the bulk lane's
    (`queued`, `bulk:queued`, `template:bulk:queued`)."""
    return f"{_TEMPLATE if degraded else ''}{'bulk:' if lane == 'bulk' else ''}{status}"


ACTIVE_KEYS = tuple(
    active_key(status, pool, lane) for pool in (False, True) for lane in LANES for status in ("queued", "in_progress")
)
_ACTIVE = frozenset(ACTIVE_KEYS)
QUEUES = frozenset(active_key("queued", pool, lane) for pool in (False, True) for lane in LANES)
"""The keys of the queues a job waits in, by pool and lane: a queued job's place depends only on its own queue."""


def pool_count(active: Counter[str], status: str, *, degraded: bool) -> int:
    """Jobs of one pool with that status, in every lane."""
    return sum(active[active_key(status, degraded, lane)] for lane in LANES)


def _tenant_queue(active: Counter[str]) -> TenantQueue:
    return TenantQueue(
        queued=pool_count(active, "queued", degraded=False),
        bulk_queued=active[active_key("queued", degraded=False, lane="bulk")],
        in_progress=pool_count(active, "in_progress", degraded=False),
        template_queued=pool_count(active, "queued", degraded=True),
    )


class ActiveCounts:
    """Active jobs (queued or in progress), by key in all and by tenant; a tenant with none is forgotten."""

    def __init__(self) -> None:
        self.pool: Counter[str] = Counter()
        self._tenants: dict[str, Counter[str]] = {}

    @classmethod
    def of_rows(cls, rows: Iterable[tuple[str, str, int, Lane, int]]) -> ActiveCounts:
        """From `(tenant, status, degraded, lane, jobs)` rows."""
        counts = cls()
        for tenant, status, degraded, lane, jobs in rows:
            key = active_key(status, bool(degraded), lane)
            counts.pool[key] += jobs
            counts._tenants.setdefault(tenant, Counter())[key] += jobs
        return counts

    def move(self, before: JobSlot | None, after: JobSlot) -> None:
        """A job moved from `before` (None: it is new) to `after`."""
        for slot, step in ((before, -1), (after, 1)):
            if slot is None or slot[1] not in _ACTIVE:
                continue
            tenant, key = slot
            self.pool[key] += step
            counts = self._tenants.setdefault(tenant, Counter())
            counts[key] += step
            if not any(counts.values()):
                del self._tenants[tenant]

    def pool_keys(self) -> Counter[str]:
        return Counter({key: self.pool[key] for key in ACTIVE_KEYS})

    def tenant(self, tenant: str) -> TenantQueue:
        counts = self._tenants.get(tenant)
        return NO_JOBS if counts is None else _tenant_queue(counts)

    def tenants(self) -> dict[str, TenantQueue]:
        return {tenant: _tenant_queue(counts) for tenant, counts in self._tenants.items()}


@dataclass(frozen=True)
class QueueState:
    """What the wait estimate needs, as stored: active jobs (by pool and lane, in all and per tenant), when GPU workers
    were last seen, recent renders, when the oldest job queued for the GPU pool arrived."""

    active: Counter[str]
    workers: dict[str, datetime]
    service_s: list[float]
    waiting_since: datetime | None = None
    tenants: dict[str, TenantQueue] = field(default_factory=dict)
