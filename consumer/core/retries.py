"""How transient failures are retried: in process with backoff, then through the retry topic, then for good; and
how requests their tenant's quota defers wait in the same topic. Pure: the retry state travels in record headers
so any worker can pick up where another stopped. Only the workers write the retry topic: the consume loop honours
a not-before or waiting-since time only there (on video.requests these headers are whatever a client sent)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["ATTEMPT", "NOT_BEFORE", "ROUND", "WAITING_SINCE", "Delivery", "RetryPolicy"]

ATTEMPT = "vidgen-attempt"
ROUND = "vidgen-retry-round"
NOT_BEFORE = "vidgen-not-before-ms"
WAITING_SINCE = "vidgen-waiting-since-ms"  # a deferred request: when it first waited for its tenant's quota
_OURS = {ATTEMPT, ROUND, NOT_BEFORE, WAITING_SINCE}
_T = TypeVar("_T")
# A deferred request comes back no sooner than this, so it cannot loop between a full worker and the topic.
_MIN_DEFERRAL_S = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff_s: float
    backoff_max_s: float
    deadline_s: float
    topic_delay_s: float
    topic_rounds: int

    def deferral_delay(self, wait_s: float | None) -> float:
        """How long a request its tenant's quota deferred waits in the retry topic: until its turn in the tenant's
        budget (`wait_s`; None when only a finished job of the tenant can free its turn: `topic_delay_s`), but no
        longer than `topic_delay_s`. A retry copy waits exactly `topic_delay_s`, so a deferral never holds back a
        retry queued after it; a longer wait is served in several trips. At least one second."""
        delay = self.topic_delay_s if wait_s is None else min(wait_s, self.topic_delay_s)
        return max(delay, _MIN_DEFERRAL_S)

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
    waiting_since_ms: int | None = None  # deferred by its tenant's quota: when it first waited (wall clock)

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes]] | None) -> Delivery:
        values = {name: value for name, value in headers or () if name in _OURS}
        return cls(
            attempt=max(1, _int(values.get(ATTEMPT), 1)),
            round=max(0, _int(values.get(ROUND), 0)),
            not_before_ms=_int(values.get(NOT_BEFORE), None),
            waiting_since_ms=_int(values.get(WAITING_SINCE), None),
        )

    def next_round(
        self, headers: Sequence[tuple[str, bytes]] | None, *, next_attempt: int, now_ms: int, delay_s: float
    ) -> list[tuple[str, bytes]]:
        """Headers for the copy sent to the retry topic: the originals (trace context) plus the retry state. A new
        round's quota wait, if any, starts afresh."""
        return _with_state(headers, next_attempt, self.round + 1, now_ms + round(delay_s * 1000))

    def deferred(
        self, headers: Sequence[tuple[str, bytes]] | None, *, waiting_since_ms: int, now_ms: int, delay_s: float
    ) -> list[tuple[str, bytes]]:
        """Headers for the copy of a request its tenant's quota deferred: the originals (trace context), the same
        attempt and round (a deferral is neither), a not-before time and when it first waited (`max_wait_s` is
        measured from then)."""
        state = _with_state(headers, self.attempt, self.round, now_ms + round(delay_s * 1000))
        return [*state, (WAITING_SINCE, str(waiting_since_ms).encode())]


def _with_state(
    headers: Sequence[tuple[str, bytes]] | None, attempt: int, rounds: int, not_before_ms: int
) -> list[tuple[str, bytes]]:
    kept = [(name, value) for name, value in headers or () if name not in _OURS]
    return [
        *kept,
        (ATTEMPT, str(attempt).encode()),
        (ROUND, str(rounds).encode()),
        (NOT_BEFORE, str(not_before_ms).encode()),
    ]


def _int(raw: bytes | None, default: _T) -> int | _T:
    if raw is None:
        return default
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return default  # a mangled header must not poison the record; it just loses its retry history
