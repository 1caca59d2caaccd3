"""Retry decisions and the retry state carried in headers: backoff, retry-topic rounds and quota deferrals."""

from __future__ import annotations

import pytest

from consumer.core.retries import Delivery
from consumer.settings import Settings
from consumer.worker.policies import retry_policy

TRACEPARENT = b"00-" + b"7" * 32 + b"-" + b"8" * 16 + b"-01"


def test_backoff_doubles_per_retry_up_to_its_cap_with_jitter_on_the_top_half() -> None:
    policy = retry_policy(Settings(retry_backoff_s=1.0, retry_backoff_max_s=5.0))
    lowest = [policy.backoff(retry, rand=lambda: 0.0) for retry in range(1, 6)]
    highest = [policy.backoff(retry, rand=lambda: 1.0) for retry in range(1, 6)]
    assert highest == [1.0, 2.0, 4.0, 5.0, 5.0]  # doubling, then the cap
    assert lowest == [ceiling / 2 for ceiling in highest]  # never less than half: a fleet spreads out, never stampedes
    assert lowest[0] < policy.backoff(1) <= highest[0]


def test_a_new_round_keeps_foreign_headers_and_replaces_the_retry_state() -> None:
    original = [("traceparent", TRACEPARENT), ("vidgen-attempt", b"3"), ("vidgen-not-before-ms", b"1")]
    headers = Delivery.from_headers(original).next_round(original, next_attempt=4, now_ms=10_000, delay_s=2.5)
    assert headers[0] == ("traceparent", TRACEPARENT)  # the trace travels along
    assert sorted(name for name, _ in headers if name.startswith("vidgen-")) == [
        "vidgen-attempt",  # replaced, never appended twice
        "vidgen-not-before-ms",
        "vidgen-retry-round",
    ]
    assert Delivery.from_headers(headers) == Delivery(attempt=4, round=1, not_before_ms=12_500)


@pytest.mark.parametrize(
    "value",
    [b"", b"x", b"\xff", b"1e3", "٣".encode()],  # empty, text, not UTF-8, not an int, a non-ASCII digit
)
def test_mangled_retry_headers_lose_their_history_but_never_the_record(value: bytes) -> None:
    headers = [("vidgen-attempt", value), ("vidgen-retry-round", value), ("vidgen-not-before-ms", value)]
    assert Delivery.from_headers(headers) == Delivery()


def test_a_deferral_waits_its_turn_but_never_longer_than_a_retry() -> None:
    policy = retry_policy(Settings(retry_topic_delay_s=30.0))
    assert policy.deferral_delay(12.5) == 12.5
    assert policy.deferral_delay(300.0) == 30.0  # served in several trips: never holds back a later retry
    assert policy.deferral_delay(None) == 30.0  # waits on a release: no known turn
    assert policy.deferral_delay(0.01) == 1.0  # never a busy loop between a full worker and the topic
    assert retry_policy(Settings(retry_topic_delay_s=0.0)).deferral_delay(None) == 1.0


def test_a_deferral_keeps_trace_attempt_and_round_and_records_when_it_first_waited() -> None:
    original = [("traceparent", TRACEPARENT), ("vidgen-attempt", b"4"), ("vidgen-retry-round", b"1")]
    delivery = Delivery.from_headers(original)
    headers = delivery.deferred(original, waiting_since_ms=1_000, now_ms=50_000, delay_s=2.5)
    assert headers == [
        ("traceparent", TRACEPARENT),
        ("vidgen-attempt", b"4"),
        ("vidgen-retry-round", b"1"),
        ("vidgen-not-before-ms", b"52500"),
        ("vidgen-waiting-since-ms", b"1000"),
    ]
    back = Delivery.from_headers(headers)
    assert (back.attempt, back.round, back.not_before_ms, back.waiting_since_ms) == (4, 1, 52_500, 1_000)
    again = back.deferred(headers, waiting_since_ms=1_000, now_ms=60_000, delay_s=1.0)
    assert [name for name, _ in again].count("vidgen-waiting-since-ms") == 1
    # A new retry round (after a transient failure) is a new request for the quota: its wait starts afresh.
    retried = back.next_round(headers, next_attempt=5, now_ms=60_000, delay_s=30.0)
    assert Delivery.from_headers(retried).waiting_since_ms is None
    assert Delivery.from_headers(retried).round == 2
