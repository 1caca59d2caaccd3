"""How transient failures are retried: in process with backoff, then through the retry topic, then for good.
Pure: the retry state travels in record headers so any worker can pick up where another stopped."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from consumer.settings import Settings

__all__ = ["ATTEMPT", "NOT_BEFORE", "ROUND", "Delivery", "RetryPolicy"]

ATTEMPT = "vidgen-attempt"
ROUND = "vidgen-retry-round"
NOT_BEFORE = "vidgen-not-before-ms"
_OURS = {ATTEMPT, ROUND, NOT_BEFORE}
_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff_s: float
    backoff_max_s: float
    deadline_s: float
    topic_delay_s: float
    topic_rounds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            attempts=settings.retry_attempts,
            backoff_s=settings.retry_backoff_s,
            backoff_max_s=settings.retry_backoff_max_s,
            deadline_s=settings.retry_deadline_s,
            topic_delay_s=settings.retry_topic_delay_s,
            topic_rounds=settings.retry_topic_rounds,
        )

    def backoff(self, retry: int, *, rand: Callable[[], float] = random.random) -> float:
        """Exponential with full jitter on the top half, so a fleet retrying together spreads out."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2 ** (retry - 1))
        return float(ceiling / 2 + rand() * ceiling / 2)


@dataclass(frozen=True)
class Delivery:
    """What a record's headers say about earlier tries."""

    attempt: int = 1  # number of the first attempt this delivery makes
    round: int = 0  # trips through the retry topic so far
    not_before_ms: int | None = None  # do not start before this wall-clock time

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes]] | None) -> Delivery:
        values = {name: value for name, value in headers or () if name in _OURS}
        return cls(
            attempt=max(1, _int(values.get(ATTEMPT), 1)),
            round=max(0, _int(values.get(ROUND), 0)),
            not_before_ms=_int(values.get(NOT_BEFORE), None),
        )

    def next_round(
        self, headers: Sequence[tuple[str, bytes]] | None, *, next_attempt: int, now_ms: int, delay_s: float
    ) -> list[tuple[str, bytes]]:
        """Headers for the copy sent to the retry topic: the originals (trace context) plus the retry state."""
        kept = [(name, value) for name, value in headers or () if name not in _OURS]
        return [
            *kept,
            (ATTEMPT, str(next_attempt).encode()),
            (ROUND, str(self.round + 1).encode()),
            (NOT_BEFORE, str(now_ms + round(delay_s * 1000)).encode()),
        ]


def _int(raw: bytes | None, default: _T) -> int | _T:
    if raw is None:
        return default
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return default  # a mangled header must not poison the record; it just loses its retry history
