"""A bounded, insertion-ordered set of recently seen keys (LRU). Pure.

In-memory on purpose, to keep the examples small: it forgets on restart and is not shared between replicas.
In production the "already delivered" fact belongs in a durable store shared by every replica (a table with a
unique key, or Redis `SET key NX EX <ttl>`), written in the same step that records the delivery.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RecentKeys"]


class RecentKeys:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        """Remember `key` as the most recent; forget the oldest when full."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
