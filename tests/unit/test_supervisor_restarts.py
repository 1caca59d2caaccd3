"""Restart decisions of the supervisor: backoff while a child keeps dying, and giving up on one that never starts."""

from __future__ import annotations

import pytest

from consumer.supervisor.restarts import (
    ChildExit,
    GiveUp,
    Restart,
    RestartHistory,
    RestartPolicy,
    after_exit,
    describe_status,
)

POLICY = RestartPolicy(backoff_s=1.0, backoff_max_s=8.0, startup_attempts=3, stable_after_s=60.0)
KILLED_WHILE_READY = ChildExit(status=-9, uptime_s=5.0, was_ready=True)
DIED_AT_START = ChildExit(status=1, uptime_s=4.0, was_ready=False)


def _delays(exits: list[ChildExit]) -> list[float | str]:
    history = RestartHistory()
    decisions: list[float | str] = []
    for ended in exits:
        history, decision = after_exit(POLICY, history, ended)
        decisions.append(decision.delay_s if isinstance(decision, Restart) else "give up")
    return decisions


def test_a_ready_child_that_dies_is_restarted_after_the_first_backoff() -> None:
    history, decision = after_exit(POLICY, RestartHistory(), KILLED_WHILE_READY)
    assert decision == Restart(1.0)
    assert history == RestartHistory(startup_failures=0, quick_deaths=1, restarts=1)


def test_backoff_doubles_while_a_child_keeps_dying_quickly_and_is_capped() -> None:
    assert _delays([KILLED_WHILE_READY] * 6) == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_long_run_resets_the_backoff() -> None:
    long_run = ChildExit(status=1, uptime_s=3_600.0, was_ready=True)
    assert _delays([KILLED_WHILE_READY, KILLED_WHILE_READY, long_run, KILLED_WHILE_READY, KILLED_WHILE_READY]) == [
        1.0,
        2.0,
        1.0,
        1.0,
        2.0,
    ]


def test_a_child_that_never_becomes_ready_stops_the_node_at_the_limit() -> None:
    assert _delays([DIED_AT_START] * 3) == [1.0, 2.0, "give up"]
    history = RestartHistory(startup_failures=2, quick_deaths=2, restarts=2)
    _, decision = after_exit(POLICY, history, DIED_AT_START)
    assert decision == GiveUp(
        "died at start-up 3 times in a row without ever becoming ready (last: exit status 1 after 4.0 s)"
    )


def test_becoming_ready_once_resets_the_start_up_count() -> None:
    assert _delays([DIED_AT_START, DIED_AT_START, KILLED_WHILE_READY, DIED_AT_START, DIED_AT_START]) == [
        1.0,
        2.0,
        4.0,
        8.0,
        8.0,
    ]


def test_even_a_slow_start_up_failure_counts() -> None:
    slow_failure = ChildExit(status=1, uptime_s=600.0, was_ready=False)
    assert _delays([slow_failure] * 3) == [1.0, 1.0, "give up"]


@pytest.mark.parametrize(
    ("status", "text"),
    [(1, "exit status 1"), (0, "exit status 0"), (-9, "killed by SIGKILL"), (-200, "killed by signal 200")],
)
def test_exit_statuses_read_as_words(status: int, text: str) -> None:
    assert describe_status(status) == text
