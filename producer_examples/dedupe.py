"""Delivery keys, and a bounded, insertion-ordered set of recently seen ones (LRU). Pure.

In-memory on purpose, to keep the examples small: it forgets on restart and is not shared between replicas.
In production the "already delivered" fact belongs in a durable store shared by every replica (a table with a
unique key, or Redis `SET key NX EX <ttl>`), written in the same step that records the delivery.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

__all__ = ["RecentKeys", "delivery_key"]


def delivery_key(tenant_id: str | None, request_id: str, status: str) -> str:
    """What identifies one delivery: the tenant, the request and the status, hashed together.

    The parts are JSON-encoded as a list before hashing, so no choice of ids (`:` is legal in both) can make two
    different triples collide, and a result claiming another tenant's request id gets a key of its own. 32 hex
    digits (128 bits): fixed length whatever the ids, safe in a header and in logs."""
    parts = json.dumps([tenant_id, request_id, status], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(parts.encode("ascii")).hexdigest()[:32]


class RecentKeys:
    """Recently seen keys, each with an optional note (the product hook keeps why a request was degraded, so a
    retried webhook is answered as the first one was)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._keys: OrderedDict[str, str | None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def note(self, key: str) -> str | None:
        """The note `key` was added with (None when it had none or is not remembered)."""
        return self._keys.get(key)

    def add(self, key: str, note: str | None = None) -> None:
        """Remember `key` (with `note`) as the most recent; forget the oldest when full."""
        self._keys[key] = note
        self._keys.move_to_end(key)
        while len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
