"""How many things each tenant holds at once (calls being handled, event streams), with a cap per tenant. Pure."""

from __future__ import annotations

from collections import Counter

__all__ = ["TenantSlots"]


class TenantSlots:
    """At most `limit` slots per tenant at a time. Only tenants holding a slot are remembered, so memory is bounded by
    what is held, not by how many tenants ever called."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._held: Counter[str] = Counter()

    def try_take(self, tenant: str) -> bool:
        """Take a slot for `tenant`: False (nothing taken) when it holds `limit` already."""
        if self._held[tenant] >= self.limit:
            return False
        self._held[tenant] += 1
        return True

    def give_back(self, tenant: str) -> None:
        held = self._held[tenant] - 1
        if held > 0:
            self._held[tenant] = held
        else:
            del self._held[tenant]

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    @property
    def total(self) -> int:
        return self._held.total()
