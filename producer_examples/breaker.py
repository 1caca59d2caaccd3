"""A circuit breaker per webhook endpoint. Pure: the clock comes in as an argument.

Closed: calls go out; `failure_threshold` failures in a row (timeouts, connection errors, 5xx, 429) open it.
Open: calls are refused for `open_s`, then one trial call is let through per `open_s` (half-open); a success
closes it, a failure keeps it open for another `open_s`. A refused call costs nothing, so a dead endpoint delays
only its own tenant's deliveries, and only until the breaker opens.
"""

from __future__ import annotations

from consumer.core.rate_limit import Clock

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    def __init__(self, *, failure_threshold: int, open_s: float, clock: Clock) -> None:
        if failure_threshold < 1 or open_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and open_s > 0")
        self._threshold = failure_threshold
        self._open_s = open_s
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None  # None: closed

    @property
    def is_open(self) -> bool:
        """Open and not yet due for a trial call (a peek: it never hands out the trial)."""
        return self._open_until is not None and self._clock() < self._open_until

    def allow(self) -> bool:
        """May a call go out now? While open, True once per `open_s` (the trial call)."""
        if self._open_until is None:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        self._open_until = now + self._open_s  # the next trial waits a full period, whatever becomes of this one
        return True

    def succeeded(self) -> None:
        self._failures = 0
        self._open_until = None

    def failed(self) -> None:
        self._failures += 1
        if self._open_until is not None or self._failures >= self._threshold:
            self._open_until = self._clock() + self._open_s
