"""Per-tenant lanes: a bound on one tenant's deliveries in flight and a circuit breaker per tenant, under a
bound on all deliveries together. Tenants come from the notifier's configuration, so the map stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from consumer.core.rate_limit import Clock
from producer_examples.breaker import CircuitBreaker

__all__ = ["TenantBounds"]


class TenantBounds:
    def __init__(
        self,
        *,
        max_concurrency: int,
        tenant_concurrency: int,
        breaker_failures: int,
        breaker_open_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._all = asyncio.Semaphore(max_concurrency)
        self._tenant_concurrency = tenant_concurrency
        self._breaker_failures = breaker_failures
        self._breaker_open_s = breaker_open_s
        self._clock = clock
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, tenant: str) -> CircuitBreaker:
        if tenant not in self._breakers:
            self._breakers[tenant] = CircuitBreaker(
                failure_threshold=self._breaker_failures, open_s=self._breaker_open_s, clock=self._clock
            )
        return self._breakers[tenant]

    def open_breakers(self) -> int:
        return sum(breaker.is_open for breaker in self._breakers.values())

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of the tenant's slots, then one of the global ones: a tenant waiting on its own bound never
        holds a global slot, so a slow tenant cannot take the whole pool."""
        mine = self._slots.setdefault(tenant, asyncio.Semaphore(self._tenant_concurrency))
        async with mine, self._all:
            yield
