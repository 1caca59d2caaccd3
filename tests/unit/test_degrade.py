"""The routing decision of graceful degradation (consumer/core/degrade.py): which topic a new request goes to, when
the GPU pool counts as down, and the product hook's view of the pool through committed offsets. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer.core.degrade import PoolActivity, choose_fallback, degrade, degraded_reason_of, pool_down
from schemas.job_api import Fallback

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("busy", "down", "fallback", "expected"),
    [
        (False, False, "template", None),  # the GPU pool keeps up: nothing degrades
        (False, False, "none", None),
        (True, False, "template", "busy"),  # would be shed: the template instead of a 503
        (True, False, "none", None),  # would be shed and the request does not allow the template: 503
        (False, True, "template", "pool_down"),
        (False, True, "none", None),  # the pool is down, no fallback: queued until a worker returns
        (True, True, "template", "pool_down"),  # both: the pool being down is the reason that matters
        (True, True, "none", None),
        (True, False, "similar", "busy"),  # an earlier video if one matches, else the template
        (False, True, "similar", "pool_down"),
        (False, False, "similar", None),
    ],
)
def test_degrade(busy: bool, down: bool, fallback: Fallback, expected: str | None) -> None:
    assert degrade(busy=busy, down=down, fallback=fallback) == expected


def test_a_full_template_pool_takes_nothing_more() -> None:
    assert degrade(busy=True, down=False, fallback="template", template_full=True) is None
    assert degrade(busy=False, down=True, fallback="template", template_full=True) is None


def test_only_known_reasons_are_read_from_a_header() -> None:
    assert [degraded_reason_of(value) for value in (b"busy", b"pool_down", None, b"BUSY", b"x" * 1000)] == [
        "busy",
        "pool_down",
        None,
        None,
        None,
    ]


def test_the_request_chooses_before_its_tenant_and_the_default() -> None:
    assert choose_fallback("none", "template", "template") == "none"
    assert choose_fallback(None, "none", "template") == "none"
    assert choose_fallback(None, None, "template") == "template"
    assert choose_fallback(None, None, "none") == "none"


@pytest.mark.parametrize(
    ("last_active", "waiting_since", "now", "down"),
    [
        (None, None, 1_000, False),  # nothing waits: never down, however long no worker was seen
        (0, None, 1_000, False),
        (None, 0, 59, False),  # no worker ever seen (scaled to zero): down once the oldest waited the delay
        (None, 0, 60, True),
        (0, 30, 80, False),  # the oldest arrived at 30: it has waited 50 s
        (0, 30, 90, True),
        (50, 30, 100, False),  # a worker answered at 50: 50 s of silence
        (50, 30, 110, True),
        (200, 30, 210, False),  # activity after the oldest arrived counts from the activity
    ],
)
def test_pool_down_after_a_quiet_delay_while_requests_wait(
    last_active: float | None, waiting_since: float | None, now: float, down: bool
) -> None:
    assert (
        pool_down(
            last_active=None if last_active is None else at(last_active),
            waiting_since=None if waiting_since is None else at(waiting_since),
            now=at(now),
            after_s=60,
        )
        is down
    )


def test_pool_activity_from_committed_offsets() -> None:
    pool = PoolActivity()
    pool.observe(committed=10, waiting=0, now=at(0))
    assert (pool.last_active, pool.waiting_since) == (None, None)  # the first sample is the baseline, not activity
    pool.observe(committed=10, waiting=3, now=at(5))
    assert (pool.last_active, pool.waiting_since) == (None, at(5))
    pool.observe(committed=10, waiting=4, now=at(10))
    assert pool.waiting_since == at(5)  # still the same wait
    assert not pool_down(last_active=pool.last_active, waiting_since=pool.waiting_since, now=at(64), after_s=60)
    assert pool_down(last_active=pool.last_active, waiting_since=pool.waiting_since, now=at(65), after_s=60)
    pool.observe(committed=12, waiting=2, now=at(70))  # a worker answered two
    assert pool.last_active == at(70)
    assert not pool_down(last_active=pool.last_active, waiting_since=pool.waiting_since, now=at(100), after_s=60)
    pool.observe(committed=14, waiting=0, now=at(80))
    assert (pool.last_active, pool.waiting_since) == (at(80), None)
