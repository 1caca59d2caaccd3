"""The process-wide budget for request bodies in flight: how many bytes of bodies, across every connection and
tenant, the API holds at once (in memory, or spooled to a temporary file for an image).

Each body is reserved before its first byte is read: its declared `Content-Length`, or its route's cap when it is
sent chunked. Past the budget a new body is refused at once with `503 body_budget_full` and `Retry-After`, unread;
bodies already in flight finish. A body's reservation lasts until its request is answered.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from consumer.errors import ApiFailure

__all__ = ["BodyBudget"]

_RETRY_AFTER_S = "1"


class BodyBudget:
    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("limit_bytes must be >= 1")
        self.limit_bytes = limit_bytes
        self.reserved_bytes = 0
        self.refused = 0

    @contextlib.contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Hold `size` bytes of the budget for the block; ApiFailure 503 (nothing held) when they do not fit."""
        if self.reserved_bytes + size > self.limit_bytes:
            self.refused += 1
            raise ApiFailure(
                503,
                "body_budget_full",
                "the API is receiving as many request bodies as it may hold; try again",
                headers={"Retry-After": _RETRY_AFTER_S},
            )
        self.reserved_bytes += size
        try:
            yield
        finally:
            self.reserved_bytes -= size
