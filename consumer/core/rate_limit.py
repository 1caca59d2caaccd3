"""Token buckets per tenant (the job API and the product hook). Pure: time comes from an injected monotonic clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Clock", "TenantLimiter", "TokenBucket"]

Clock = Callable[[], float]


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` tokens per second. One request takes one token."""

    def __init__(self, *, rate: float, burst: int, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def try_take(self) -> float:
        """Take a token: 0.0 when granted, else the seconds until one will be available."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class TenantLimiter:
    """One bucket per tenant. Memory is bounded: past `max_tenants`, the least recently seen tenant's bucket is
    dropped (it comes back full, which only errs on the generous side)."""

    def __init__(self, *, rate: float, burst: int, clock: Clock, max_tenants: int = 10_000) -> None:
        TokenBucket(rate=rate, burst=burst, clock=clock)  # validates the arguments once, up front
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._max_tenants = max_tenants
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def try_take(self, tenant: str) -> float:
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = TokenBucket(rate=self._rate, burst=self._burst, clock=self._clock)
            while len(self._buckets) > self._max_tenants:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(tenant)
        return bucket.try_take()

    def __len__(self) -> int:
        return len(self._buckets)
