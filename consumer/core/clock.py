"""The clocks the worker reads, as types: everything that depends on time takes its clock as an argument. Pure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

__all__ = ["Monotonic", "WallClock", "utc_now"]

WallClock = Callable[[], datetime]
"""Aware UTC datetimes, for what events say (`timings`, not-before times in headers)."""

Monotonic = Callable[[], float]
"""Seconds that never go back, for durations (quota buckets); `time.monotonic` in the worker."""


def utc_now() -> datetime:
    return datetime.now(UTC)
