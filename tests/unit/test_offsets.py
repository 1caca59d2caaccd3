"""Commit only the contiguous finished prefix of each partition."""

from __future__ import annotations

from consumer.core.offsets import OffsetTracker


def test_out_of_order_finish_commits_only_the_contiguous_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.start("p0", offset)
    tracker.finish("p0", 11)
    assert tracker.take_committable() == {}
    tracker.finish("p0", 10)
    assert tracker.take_committable() == {"p0": 12}
    assert tracker.take_committable() == {}  # handed out once
    tracker.finish("p0", 12)
    assert tracker.take_committable() == {"p0": 13}
    assert tracker.in_flight() == 0


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.start("p0", 0)
    tracker.start("p1", 5)
    tracker.finish("p1", 5)
    assert tracker.take_committable() == {"p1": 6}
    assert tracker.in_flight("p0") == 1
    assert tracker.in_flight() == 1


def test_forgotten_partition_is_never_committed() -> None:
    tracker = OffsetTracker()
    tracker.start("p0", 3)
    tracker.forget("p0")
    tracker.finish("p0", 3)  # a job that finished after its partition was revoked
    assert tracker.take_committable() == {}
    assert tracker.in_flight() == 0
