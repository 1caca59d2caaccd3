"""The pure statistics the benchmarks rest on (bench/stats.py, bench/duty_cycle.py's summary). Every benchmark run
once with tiny parameters against a broker is in tests/integration/test_bench_smoke.py."""

from __future__ import annotations

import pytest

from bench import duty_cycle, stats


def test_union_merges_overlapping_and_touching_intervals() -> None:
    assert stats.union([(5, 6), (0, 2), (1, 3), (3, 4)]) == [(0, 4), (5, 6)]
    assert stats.union([]) == []


def test_union_rejects_an_interval_that_ends_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends before"):
        stats.union([(2, 1)])


def test_covered_and_gaps() -> None:
    intervals = [(0.0, 1.0), (0.5, 2.0), (2.5, 3.0), (4.0, 4.5)]
    assert stats.covered(intervals) == pytest.approx(3.0)
    assert stats.gaps(intervals) == pytest.approx([0.5, 1.0])
    assert stats.gaps([(0, 1)]) == []


def test_duty_cycle_is_busy_time_over_the_span() -> None:
    duty = stats.duty_cycle([(10.0, 11.0), (11.2, 12.0), (12.0, 13.0)])
    assert duty.span_s == pytest.approx(3.0)
    assert duty.busy_s == pytest.approx(2.8)
    assert duty.fraction == pytest.approx(2.8 / 3.0)
    assert duty.largest_gap_s == pytest.approx(0.2)
    assert duty.gaps_over_10ms == 1
    assert stats.duty_cycle([(1.0, 1.0)]).fraction == 1.0
    with pytest.raises(ValueError, match="no intervals"):
        stats.duty_cycle([])


def test_holds_start_when_the_model_is_taken() -> None:
    assert stats.holds([2.5, 0.0], 0.5) == [(0.0, 0.5), (2.5, 3.0)]
    duty = stats.duty_cycle(stats.holds([0.0, 1.2, 2.2], 1.0))
    assert duty.fraction == pytest.approx(3.0 / 3.2)
    assert duty.largest_gap_s == pytest.approx(0.2)


def test_percentile_interpolates_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 99) == pytest.approx(3.97)
    assert stats.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match="out of range"):
        stats.percentile([1.0], 101)


def test_summary_scales_and_rounds() -> None:
    assert stats.summary([0.001, 0.002, 0.003], scale=1000, digits=1) == {
        "p50": 2.0,
        "p90": 2.8,
        "p99": 3.0,
        "mean": 2.0,
        "max": 3.0,
    }


def test_slope_is_least_squares() -> None:
    assert stats.slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert stats.slope([0, 1], [0, 1]) is None
    assert stats.slope([1, 1, 1], [0, 1, 2]) is None


def test_duty_cycle_summary_drops_the_warm_up_render_and_measures_model_idle() -> None:
    # Renders of R = 1 s. The first (cold) is left out. Each reported interval ends 0.1 s after the model was
    # released (the 8-bit conversion), so the reported intervals hide part of the model's idle time.
    intervals = [(0.0, 1.6), (1.5, 2.6), (2.7, 3.8), (3.75, 4.85)]
    figures = duty_cycle.summarise(intervals, hold_s=1.0, inflight=2, wall_s=6.0)
    assert figures["renders"] == 3
    assert figures["render_fraction"] == pytest.approx(round(3.25 / 3.35, 4))
    assert figures["largest_gap_s"] == pytest.approx(0.1)
    assert figures["hold_fraction"] == pytest.approx(round(3.0 / 3.25, 4))
    assert figures["largest_idle_between_holds_s"] == pytest.approx(0.2)
    assert figures["median_idle_between_holds_s"] == pytest.approx(0.125)
    assert figures["idle_stretches_over_10ms"] == 2
    assert figures["median_after_hold_ms"] == pytest.approx(100.0)
    assert figures["timeline"]["hold"] == [[0.0, 1.0], [1.2, 2.2], [2.25, 3.25]]
