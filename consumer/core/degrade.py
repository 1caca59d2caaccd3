"""Graceful degradation at the edge: where a new request goes when the GPU pool cannot take it. Pure.

The job API and the product hook ask `degrade` before publishing. A request goes to the template pool's topic
(workers with `VIDGEN_MODEL=template`: a simpler video within seconds, marked `degraded`) instead of the GPU pool's
when its fallback allows it and either

- `busy`: the GPU pool would refuse the request (what the job API answers `503` for). The job API judges that per
  tenant (`consumer.api.submission.shedding`): over the tenant's own queue or wait limit, or the pool full and the
  tenant at or over its fair share. So a tenant within its share is never degraded because of other tenants' queued
  jobs; the product hook, which sees the pool only through committed offsets, judges it over every request. Or
- `pool_down`: no GPU worker has shown activity for a while although requests are waiting for one (`pool_down`).

The fallback `similar` goes further first: a request with an uploaded start image that the tenant already has a
completed, non-degraded video of is answered with that video at once (`consumer.core.similar`; at the product hook,
a product the shop has a video of: `producer_examples.product_videos`); else it goes to the template pool like
`template`. Without a fallback a busy request is refused (`503`, try later)
and a request for a pool that is down is queued all the same (it is answered once a worker returns).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.job_api import DegradedReason, Fallback

__all__ = [
    "DEGRADED_REASON_HEADER",
    "FALLBACK_HEADER",
    "DegradedReason",
    "Fallback",
    "PoolActivity",
    "choose_fallback",
    "degrade",
    "degraded_reason_of",
    "fallback_of",
    "pool_down",
]

_FALLBACKS: tuple[Fallback, ...] = ("similar", "template", "none")

DEGRADED_REASON_HEADER = "vidgen-degraded-reason"
"""Header of a request the API or the hook routed to the template pool: why (`busy` or `pool_down`)."""

FALLBACK_HEADER = "vidgen-fallback"
"""Header of a request the job API published: the job's fallback choice (its own, else the default that applied), so
every replica's view can show it. Informative only: it decides nothing about routing or access."""


def degraded_reason_of(header: bytes | None) -> DegradedReason | None:
    """The reason a request's header names, if it is one of the known reasons (anything else is ignored)."""
    if header == b"busy":
        return "busy"
    return "pool_down" if header == b"pool_down" else None


def fallback_of(header: bytes | None) -> Fallback | None:
    """The fallback a request's header names, if it is one of the known choices (anything else is ignored)."""
    for choice in _FALLBACKS:
        if header == choice.encode():
            return choice
    return None


def choose_fallback(requested: Fallback | None, tenant: Fallback | None, default: Fallback) -> Fallback:
    """The request's own choice, else its tenant's, else the service default."""
    if requested is not None:
        return requested
    return tenant if tenant is not None else default


def pool_down(*, last_active: datetime | None, waiting_since: datetime | None, now: datetime, after_s: float) -> bool:
    """True when requests wait for the GPU pool (`waiting_since`: when the oldest still waiting arrived; None: none
    waits) and for `after_s` no GPU worker has shown activity (`last_active`; None: none ever seen). A pool that
    scales to zero is not down until its first request has waited `after_s`."""
    if waiting_since is None:
        return False
    quiet_since = waiting_since if last_active is None else max(last_active, waiting_since)
    return (now - quiet_since).total_seconds() >= after_s


def degrade(*, busy: bool, down: bool, fallback: Fallback, template_full: bool = False) -> DegradedReason | None:
    """Why a new request degrades (to an earlier video or the template pool), or None: it goes to the GPU pool (or,
    when `busy`, is refused). A template pool whose own queue is full for the request (`template_full`) takes
    nothing more."""
    if fallback == "none" or template_full:
        return None
    if down:
        return "pool_down"  # the reason that matters when the pool is both down and busy
    return "busy" if busy else None


@dataclass
class PoolActivity:
    """The GPU pool seen from outside, through its consumer group's committed offsets (the product hook's view):
    `observe` a sample now and then; the committed total moving means a worker answered something.

    `last_active`: when the committed total last moved (None until it does). `waiting_since`: since when requests
    have been waiting (uncommitted) without a break (None while nothing waits)."""

    last_active: datetime | None = None
    waiting_since: datetime | None = None
    _committed: int | None = None

    def observe(self, *, committed: int, waiting: int, now: datetime) -> None:
        if self._committed is not None and committed != self._committed:
            self.last_active = now
        self._committed = committed
        if waiting <= 0:
            self.waiting_since = None
        elif self.waiting_since is None:
            self.waiting_since = now
