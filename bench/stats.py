"""Pure statistics for the benchmarks: interval unions, idle gaps, duty cycles, percentiles. No I/O."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DutyCycle",
    "Interval",
    "covered",
    "duty_cycle",
    "gaps",
    "holds",
    "percentile",
    "slope",
    "summary",
    "union",
]

Interval = tuple[float, float]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping intervals covering exactly what the input covers (touching ones merge)."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if end < start:
            raise ValueError(f"interval ends before it starts: ({start}, {end})")
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(intervals: Iterable[Interval]) -> float:
    """Total length covered by at least one interval."""
    return sum(end - start for start, end in union(intervals))


def gaps(intervals: Iterable[Interval]) -> list[float]:
    """Idle stretches between consecutive covered stretches, in time order."""
    merged = union(intervals)
    return [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(merged)]


@dataclass(frozen=True)
class DutyCycle:
    span_s: float  # first start to last end
    busy_s: float  # covered by at least one interval
    fraction: float  # busy_s / span_s
    largest_gap_s: float
    gaps_over_10ms: int


def duty_cycle(intervals: Sequence[Interval]) -> DutyCycle:
    """How much of the span from the first start to the last end the intervals cover, and the worst gap."""
    if not intervals:
        raise ValueError("no intervals")
    merged = union(intervals)
    span = merged[-1][1] - merged[0][0]
    busy = sum(end - start for start, end in merged)
    idle = gaps(merged)
    return DutyCycle(
        span_s=span,
        busy_s=busy,
        fraction=busy / span if span > 0 else 1.0,
        largest_gap_s=max(idle, default=0.0),
        gaps_over_10ms=sum(1 for gap in idle if gap > 0.010),
    )


def holds(starts: Iterable[float], hold_s: float) -> list[Interval]:
    """The stretch each render held the model, for a stand-in that holds it for exactly `hold_s` from the moment
    it is taken: (start, start + hold_s), in time order."""
    return [(start, start + hold_s) for start in sorted(starts)]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], *, scale: float = 1.0, digits: int = 4) -> dict[str, float]:
    """p50, p90, p99, mean and max of `values` multiplied by `scale` (e.g. 1000 for seconds to ms)."""
    return {
        "p50": round(percentile(values, 50) * scale, digits),
        "p90": round(percentile(values, 90) * scale, digits),
        "p99": round(percentile(values, 99) * scale, digits),
        "mean": round(sum(values) / len(values) * scale, digits),
        "max": round(max(values) * scale, digits),
    }


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs; None with fewer than 3 points or no spread in xs."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    if len(xs) < 3:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
