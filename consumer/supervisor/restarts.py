"""What to do when a child worker exits on its own (pure): restart it after a backoff, or give up.

A child that dies before it ever became ready, several times in a row, will not get better by itself (bad model
path, broken GPU, wrong configuration): the supervisor stops with that reason instead of restarting forever.
A child that dies after being ready is restarted, with a backoff that doubles while it keeps dying quickly.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace

__all__ = ["ChildExit", "GiveUp", "Restart", "RestartHistory", "RestartPolicy", "after_exit", "describe_status"]


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    startup_attempts: int = 3  # consecutive runs that die before ready, then the supervisor gives up
    stable_after_s: float = 60.0  # a run this long resets the backoff


@dataclass(frozen=True)
class ChildExit:
    """How one run of a child ended: its exit status (negative: killed by that signal), how long it ran and
    whether it ever answered ready."""

    status: int
    uptime_s: float
    was_ready: bool


@dataclass(frozen=True)
class RestartHistory:
    startup_failures: int = 0  # consecutive runs that never became ready
    quick_deaths: int = 0  # consecutive runs shorter than stable_after_s
    restarts: int = 0


@dataclass(frozen=True)
class Restart:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def after_exit(
    policy: RestartPolicy, history: RestartHistory, ended: ChildExit
) -> tuple[RestartHistory, Restart | GiveUp]:
    startup_failures = 0 if ended.was_ready else history.startup_failures + 1
    quick_deaths = history.quick_deaths + 1 if ended.uptime_s < policy.stable_after_s else 0
    if startup_failures >= policy.startup_attempts:
        reason = (
            f"died at start-up {startup_failures} times in a row without ever becoming ready "
            f"(last: {describe_status(ended.status)} after {ended.uptime_s:.1f} s)"
        )
        return replace(history, startup_failures=startup_failures, quick_deaths=quick_deaths), GiveUp(reason)
    delay = min(policy.backoff_max_s, policy.backoff_s * 2 ** max(quick_deaths - 1, 0))
    updated = RestartHistory(startup_failures, quick_deaths, history.restarts + 1)
    return updated, Restart(delay)
