"""Per-tenant admission: in-flight and per-minute limits, and a round-robin queue across tenants. Pure.

Policy:

- A tenant at its in-flight limit, or out of per-minute budget, is **deferred**, never dropped: its record
  waits in the worker's local pending queue (its offset stays uncommitted) while other tenants' records go
  ahead. The record is admitted as soon as a slot is released or budget refills.
- The per-minute limit is a token bucket holding `per_minute` tokens that refills at `per_minute / 60` per
  second: a tenant may burst up to `per_minute` requests, then sustain `per_minute` a minute. A deferral
  comes with `retry_after_s`, the exact time until the next token (None when only a release can help).
- With `max_wait_s` set, a record is **rejected** (`rate_limited`, retryable) instead of deferred once it has
  waited `max_wait_s`, or at once if the known wait for its next token would take it past `max_wait_s`.
  Without it, records wait as long as it takes.
- `FairQueue.take` offers the head record of each tenant in turn (round-robin), so one tenant with 1000
  queued requests delays a tenant with one by at most one record per other tenant, not 1000.
- Deferred records never fill the queue: once it is full, `FairQueue.overflow` gives up deferred records (the
  newest of the tenant with the most deferred records first) until half of it is free, each with when its turn
  in its tenant's budget comes, or rejected if that is past `max_wait_s`. The worker hands them to the retry
  topic, so fetching goes on and other tenants' records are still read and started.
- A tenant's records wait in the order they first asked (`since`), so a record that comes back from a
  deferral goes ahead of the tenant's newer ones and the newest are the ones given up.
- Memory is bounded by the active tenants: a tenant with nothing in flight and a full bucket is the same as an
  unknown tenant and is forgotten (at once on release, otherwise in an amortised sweep).

The clock is injected: `time.monotonic` in the worker, a counter in tests.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from consumer.core.clock import Monotonic
from consumer.errors import RateLimited

__all__ = ["FairQueue", "QuotaDecision", "TenantQuotas"]

Job = TypeVar("Job")

# The sweep of idle tenants runs when this many operations, or as many as there are tenants, have passed.
_MIN_SWEEP_INTERVAL = 64


@dataclass(frozen=True)
class QuotaDecision:
    """What to do with a tenant's next record now."""

    action: Literal["admit", "defer", "reject"]
    retry_after_s: float | None = None  # defer: seconds until budget refills; None: wait for a release
    reason: str = ""

    @property
    def admitted(self) -> bool:
        return self.action == "admit"

    def error(self, tenant: str) -> RateLimited:
        """The error for a `reject` decision, for the `failed` result."""
        return RateLimited(f"tenant {tenant}: {self.reason}")


class _Tenant:
    __slots__ = ("inflight", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.inflight = 0
        self.tokens = tokens
        self.updated = now


class TenantQuotas:
    """Admission per tenant. Every admitted `try_acquire` must be paired with one `release` when the job ends."""

    def __init__(
        self,
        *,
        max_inflight_per_tenant: int | None,
        per_minute: int | None,
        clock: Monotonic,
        max_wait_s: float | None = None,
    ) -> None:
        if max_inflight_per_tenant is not None and max_inflight_per_tenant < 1:
            raise ValueError("max_inflight_per_tenant must be at least 1 (or None for no limit)")
        if per_minute is not None and per_minute < 1:
            raise ValueError("per_minute must be at least 1 (or None for no limit)")
        if max_wait_s is not None and max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative")
        self._max_inflight = max_inflight_per_tenant
        self._capacity = float(per_minute) if per_minute is not None else None
        self._rate = per_minute / 60.0 if per_minute is not None else 0.0
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}
        self._ops = 0

    def now(self) -> float:
        return self._clock()

    def tracked(self) -> int:
        """Tenants currently remembered (bounded by the active ones)."""
        return len(self._tenants)

    def inflight(self, tenant: str) -> int:
        state = self._tenants.get(tenant)
        return state.inflight if state else 0

    def try_acquire(self, tenant: str, *, waiting_since: float | None = None) -> QuotaDecision:
        """Admit (taking an in-flight slot and a token), defer, or reject. `waiting_since` is the clock time the
        record first asked; it drives the `max_wait_s` rejection."""
        now = self._clock()
        self._maybe_sweep(now)
        state = self._tenants.get(tenant)
        decision = self._decide(now, state, 0, waiting_since)
        if not decision.admitted:
            return decision
        tokens = self._tokens(state, now)
        if state is None:
            state = self._tenants[tenant] = _Tenant(tokens, now)
        state.inflight += 1
        state.tokens = tokens - 1.0 if self._capacity is not None else tokens
        state.updated = now
        return QuotaDecision("admit")

    def decide(self, tenant: str, *, position: int, waiting_since: float | None = None) -> QuotaDecision:
        """What `try_acquire` would say to the record `position` places back in the tenant's line, once those
        ahead of it were admitted; takes nothing. A deferral's `retry_after_s` is when the budget reaches it."""
        return self._decide(self._clock(), self._tenants.get(tenant), position, waiting_since)

    def headroom(self, tenant: str) -> float:
        """How many more of the tenant's records would be admitted now (`math.inf` when no limit applies)."""
        now = self._clock()
        state = self._tenants.get(tenant)
        room = math.inf
        if self._max_inflight is not None:
            room = max(0, self._max_inflight - (state.inflight if state else 0))
        if self._capacity is not None:
            room = min(room, math.floor(self._tokens(state, now)))
        return room

    def release(self, tenant: str) -> None:
        """End of an admitted job (completed, failed or cancelled)."""
        state = self._tenants.get(tenant)
        if state is None or state.inflight == 0:
            raise ValueError(f"release of tenant {tenant!r} without a matching admitted try_acquire")
        state.inflight -= 1
        if self._is_idle(state, self._clock()):
            del self._tenants[tenant]

    def _decide(self, now: float, state: _Tenant | None, position: int, waiting_since: float | None) -> QuotaDecision:
        inflight = state.inflight if state else 0
        if self._max_inflight is not None and inflight + position >= self._max_inflight:
            reason = f"at its limit of {self._max_inflight} requests in flight"
            return self._blocked(now, waiting_since, None, reason)
        tokens = self._tokens(state, now)
        if self._capacity is not None and tokens < position + 1:
            wait = (position + 1 - tokens) / self._rate
            return self._blocked(now, waiting_since, wait, f"over {int(self._capacity)} requests per minute")
        return QuotaDecision("admit")

    def _blocked(self, now: float, waiting_since: float | None, wait: float | None, reason: str) -> QuotaDecision:
        if self._max_wait_s is not None:
            waited = max(0.0, now - waiting_since) if waiting_since is not None else 0.0
            if waited >= self._max_wait_s or (wait is not None and waited + wait > self._max_wait_s):
                return QuotaDecision("reject", None, f"{reason}; would wait more than {self._max_wait_s:g} s")
        return QuotaDecision("defer", wait, reason)

    def _tokens(self, state: _Tenant | None, now: float) -> float:
        if self._capacity is None:
            return 0.0
        if state is None:
            return self._capacity
        elapsed = max(0.0, now - state.updated)  # a clock that steps back must not mint or burn tokens
        return min(self._capacity, state.tokens + elapsed * self._rate)

    def _is_idle(self, state: _Tenant, now: float) -> bool:
        return state.inflight == 0 and (self._capacity is None or self._tokens(state, now) >= self._capacity)

    def _maybe_sweep(self, now: float) -> None:
        # Amortised O(1): a full pass at most once per max(64, tenants) calls.
        self._ops += 1
        if self._ops < max(_MIN_SWEEP_INTERVAL, len(self._tenants)):
            return
        self._ops = 0
        for tenant in [name for name, state in self._tenants.items() if self._is_idle(state, now)]:
            del self._tenants[tenant]


class FairQueue(Generic[Job]):
    """The worker's pending records, per tenant, handed out round-robin through the quotas."""

    def __init__(self, quotas: TenantQuotas) -> None:
        self._quotas = quotas
        self._queues: dict[str, deque[tuple[float, Job]]] = {}
        self._order: deque[str] = deque()  # tenants with pending jobs; the next to be offered first
        self._size = 0
        self.wake_in_s: float | None = None  # after a `take` that found nothing: earliest known retry

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Job]:
        return (job for queue in self._queues.values() for _, job in queue)

    def push(self, tenant: str, job: Job, *, since: float | None = None) -> None:
        """Queue a job behind the tenant's jobs that asked earlier. `since`: the clock time it first asked (now
        when None; earlier for a record a deferral brings back, which then goes ahead of the tenant's newer ones)."""
        queue = self._queues.get(tenant)
        if queue is None:
            queue = self._queues[tenant] = deque()
            self._order.append(tenant)
        item = (self._quotas.now() if since is None else since, job)
        if queue and item[0] < queue[-1][0]:
            queue.insert(bisect.bisect_right(queue, item[0], key=_since), item)
        else:
            queue.append(item)
        self._size += 1

    def take(self) -> tuple[str, Job, QuotaDecision] | None:
        """The next job to admit or reject, or None when every tenant is deferred. An admitted job holds a
        quota slot: call `quotas.release(tenant)` when it ends. A rejected one holds nothing."""
        self.wake_in_s = None
        for _ in range(len(self._order)):
            tenant = self._order[0]
            self._order.rotate(-1)  # whatever happens, this tenant goes to the back of the line
            queue = self._queues[tenant]
            since, job = queue[0]
            decision = self._quotas.try_acquire(tenant, waiting_since=since)
            if decision.action == "defer":
                wait = decision.retry_after_s
                if wait is not None and (self.wake_in_s is None or wait < self.wake_in_s):
                    self.wake_in_s = wait
                continue
            queue.popleft()
            self._size -= 1
            if not queue:
                del self._queues[tenant]
                self._order.pop()  # the rotation just put it last
            return tenant, job, decision
        return None

    def overflow(self, limit: int) -> list[tuple[str, Job, QuotaDecision]]:
        """Deferred jobs to give up so that deferred jobs never keep the queue full: none while it holds fewer than
        `limit`, else the newest of the tenant with the most deferred jobs, one at a time, until half of `limit` is
        free or no deferred job is left. Jobs the quotas would admit now stay (they only wait for a slot). Each comes
        with its decision: `defer` with `retry_after_s` when its turn in the tenant's budget comes (None: when a
        release frees a slot), or `reject` when that is past the quotas' `max_wait_s`."""
        if self._size < limit:
            return []
        keep = limit - max(1, limit // 2)
        deferred = {
            tenant: max(0.0, len(self._queues[tenant]) - self._quotas.headroom(tenant)) for tenant in self._order
        }
        given_up: list[tuple[str, Job, QuotaDecision]] = []
        while self._size > keep:
            tenant = max(deferred, key=deferred.__getitem__, default=None)
            if tenant is None or not deferred[tenant]:
                break
            queue = self._queues[tenant]
            since, job = queue.pop()
            given_up.append((tenant, job, self._quotas.decide(tenant, position=len(queue), waiting_since=since)))
            self._size -= 1
            deferred[tenant] -= 1
            if not queue:
                del self._queues[tenant], deferred[tenant]
                self._order.remove(tenant)
        return given_up

    def remove(self, predicate: Callable[[Job], bool]) -> list[Job]:
        """Take out the jobs matching `predicate` (e.g. of revoked partitions), keeping the others' order."""
        removed: list[tuple[float, Job]] = []
        for tenant in list(self._order):
            kept: deque[tuple[float, Job]] = deque()
            for item in self._queues[tenant]:
                (removed if predicate(item[1]) else kept).append(item)
            if kept:
                self._queues[tenant] = kept
            else:
                del self._queues[tenant]
                self._order.remove(tenant)
        self._size -= len(removed)
        return [job for _, job in removed]


def _since(item: tuple[float, object]) -> float:
    return item[0]
