"""Per-tenant quotas and the fair queue, driven by a fake clock: no sleeping, no worker."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.quotas import FairQueue, QuotaDecision, TenantQuotas
from consumer.errors import RateLimited, VidgenError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _quotas(clock: FakeClock, **limits: float | None) -> TenantQuotas:
    options: dict[str, float | None] = {"max_inflight_per_tenant": None, "per_minute": None, **limits}
    return TenantQuotas(
        max_inflight_per_tenant=int(options["max_inflight_per_tenant"] or 0) or None,
        per_minute=int(options["per_minute"] or 0) or None,
        max_wait_s=options.get("max_wait_s"),
        clock=clock,
    )


def test_no_limits_admits_everything(clock: FakeClock) -> None:
    quotas = _quotas(clock)
    assert all(quotas.try_acquire("a").admitted for _ in range(1_000))


def test_inflight_limit_defers_until_a_release(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=2)
    assert quotas.try_acquire("a").admitted
    assert quotas.try_acquire("a").admitted
    deferred = quotas.try_acquire("a")
    assert (deferred.action, deferred.retry_after_s) == ("defer", None)
    assert "in flight" in deferred.reason
    assert quotas.try_acquire("b").admitted  # other tenants are unaffected
    quotas.release("a")
    assert quotas.try_acquire("a").admitted


def test_per_minute_allows_a_burst_then_refills_at_the_rate(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=6)  # one token every 10 s
    for _ in range(6):
        assert quotas.try_acquire("a").admitted
        quotas.release("a")
    deferred = quotas.try_acquire("a")
    assert deferred.action == "defer"
    assert deferred.retry_after_s == pytest.approx(10.0)
    clock.advance(4.0)
    assert quotas.try_acquire("a").retry_after_s == pytest.approx(6.0)
    clock.advance(6.0)
    assert quotas.try_acquire("a").admitted


def test_a_deferral_consumes_nothing(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=1, max_inflight_per_tenant=1)
    assert quotas.try_acquire("a").admitted
    for _ in range(5):
        assert quotas.try_acquire("a").action == "defer"
    quotas.release("a")
    clock.advance(60.0)
    assert quotas.try_acquire("a").admitted


def test_max_wait_rejects_when_the_known_wait_is_too_long(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=1, max_wait_s=30.0)
    assert quotas.try_acquire("a").admitted
    decision = quotas.try_acquire("a", waiting_since=clock())
    assert decision.action == "reject"
    error = decision.error("a")
    assert isinstance(error, RateLimited)
    assert isinstance(error, VidgenError)
    assert (error.code, error.retriable, error.rejects) == ("rate_limited", True, False)
    assert error.message.startswith("tenant a: ")


def test_max_wait_rejects_after_waiting_that_long_for_a_release(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1, max_wait_s=30.0)
    assert quotas.try_acquire("a").admitted
    since = clock()
    clock.advance(29.0)
    assert quotas.try_acquire("a", waiting_since=since).action == "defer"
    clock.advance(1.0)
    assert quotas.try_acquire("a", waiting_since=since).action == "reject"


def test_release_without_acquire_is_a_bug(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1)
    with pytest.raises(ValueError, match="without a matching"):
        quotas.release("nobody")


@pytest.mark.parametrize(
    "limits",
    [{"max_inflight_per_tenant": 0}, {"per_minute": 0}, {"max_wait_s": -1.0}],
)
def test_nonsense_limits_are_refused(limits: dict[str, float]) -> None:
    arguments = {"max_inflight_per_tenant": None, "per_minute": None, "clock": FakeClock(), **limits}
    with pytest.raises(ValueError, match="must"):
        TenantQuotas(**arguments)  # type: ignore[arg-type]


def test_idle_tenants_are_forgotten(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1, per_minute=60)
    for i in range(1_000):
        assert quotas.try_acquire(f"t{i}").admitted
        quotas.release(f"t{i}")
    assert quotas.tracked() <= 1_000
    clock.advance(2.0)  # every bucket is full again: those tenants are indistinguishable from new ones
    for _ in range(1_000):
        quotas.try_acquire("busy")
    assert quotas.tracked() == 1  # the sweep kept only "busy", which has a job in flight


def test_a_tenant_without_a_rate_limit_is_forgotten_at_its_last_release(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=2)
    assert quotas.try_acquire("a").admitted
    assert quotas.try_acquire("a").admitted
    quotas.release("a")
    assert quotas.tracked() == 1
    quotas.release("a")
    assert quotas.tracked() == 0


def test_a_tenant_in_flight_is_never_forgotten(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1)
    assert quotas.try_acquire("long").admitted
    clock.advance(86_400.0)
    for i in range(500):
        quotas.try_acquire(f"other{i}")
        quotas.release(f"other{i}")
    assert quotas.inflight("long") == 1
    assert quotas.try_acquire("long").action == "defer"


def test_clock_stepping_back_mints_no_tokens(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=1)
    assert quotas.try_acquire("a").admitted
    clock.advance(-3_600.0)
    assert quotas.try_acquire("a").action == "defer"


# --- Fair queue ------------------------------------------------------------------------------------------


def _drain(queue: FairQueue[str], quotas: TenantQuotas) -> list[str]:
    order: list[str] = []
    while (item := queue.take()) is not None:
        tenant, job, decision = item
        assert decision.admitted
        order.append(job)
        quotas.release(tenant)
    return order


def test_one_tenant_with_many_jobs_does_not_starve_another(clock: FakeClock) -> None:
    quotas = _quotas(clock)
    queue: FairQueue[str] = FairQueue(quotas)
    for i in range(1_000):
        queue.push("big", f"big-{i}")
    queue.push("small", "small-0")
    order = _drain(queue, quotas)
    assert order.index("small-0") == 1
    assert len(order) == 1_001
    assert [job for job in order if job.startswith("big")] == [f"big-{i}" for i in range(1_000)]


def test_round_robin_across_three_tenants(clock: FakeClock) -> None:
    quotas = _quotas(clock)
    queue: FairQueue[str] = FairQueue(quotas)
    for tenant, count in (("a", 3), ("b", 2), ("c", 1)):
        for i in range(count):
            queue.push(tenant, f"{tenant}{i}")
    assert _drain(queue, quotas) == ["a0", "b0", "c0", "a1", "b1", "a2"]
    assert len(queue) == 0


def test_deferred_tenant_is_skipped_and_others_proceed(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1, per_minute=60)
    queue: FairQueue[str] = FairQueue(quotas)
    queue.push("a", "a0")
    queue.push("a", "a1")
    queue.push("b", "b0")
    first = queue.take()
    assert first is not None
    assert first[:2] == ("a", "a0")
    second = queue.take()
    assert second is not None
    assert second[:2] == ("b", "b0")  # a is at its in-flight limit
    assert queue.take() is None
    assert queue.wake_in_s is None  # only a release can help a
    quotas.release("a")
    third = queue.take()
    assert third is not None
    assert third[:2] == ("a", "a1")


def test_wake_in_reports_the_earliest_refill(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=1)
    queue: FairQueue[str] = FairQueue(quotas)
    for job in ("a0", "a1"):
        queue.push("a", job)
    taken = queue.take()
    assert taken is not None
    quotas.release("a")
    assert queue.take() is None
    assert queue.wake_in_s == pytest.approx(60.0)


def test_jobs_waiting_too_long_come_out_rejected(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1, max_wait_s=10.0)
    queue: FairQueue[str] = FairQueue(quotas)
    queue.push("a", "a0")
    queue.push("a", "a1")
    assert queue.take() is not None  # a0 admitted and still running
    assert queue.take() is None
    clock.advance(10.0)
    taken = queue.take()
    assert taken is not None
    tenant, job, decision = taken
    assert (tenant, job, decision.action) == ("a", "a1", "reject")
    assert len(queue) == 0


def test_remove_takes_out_jobs_of_revoked_partitions(clock: FakeClock) -> None:
    quotas = _quotas(clock)
    queue: FairQueue[tuple[int, int]] = FairQueue(quotas)  # (partition, offset)
    for job in ((0, 1), (1, 2), (0, 3)):
        queue.push("a", job)
    queue.push("b", (0, 4))
    assert sorted(queue.remove(lambda job: job[0] == 0)) == [(0, 1), (0, 3), (0, 4)]
    assert len(queue) == 1
    taken = queue.take()
    assert taken is not None
    assert taken[:2] == ("a", (1, 2))
    assert queue.take() is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3)), max_size=60))
def test_every_job_comes_out_exactly_once_within_the_inflight_limit(ops: list[tuple[str, int]]) -> None:
    quotas = TenantQuotas(max_inflight_per_tenant=1, per_minute=None, clock=FakeClock())
    queue: FairQueue[int] = FairQueue(quotas)
    for number, (tenant, _) in enumerate(ops):
        queue.push(tenant, number)
    running: list[str] = []
    seen: list[int] = []
    for _, releases in ops:
        for tenant in running[:releases]:
            quotas.release(tenant)
        running = running[releases:]
        while (item := queue.take()) is not None:
            tenant, job, decision = item
            assert decision == QuotaDecision("admit")
            assert tenant not in running  # the in-flight limit of 1 holds
            running.append(tenant)
            seen.append(job)
    for tenant in running:
        quotas.release(tenant)
    while (item := queue.take()) is not None:
        seen.append(item[1])
        quotas.release(item[0])
    assert sorted(seen) == list(range(len(ops)))
    assert len(queue) == 0


# --- Deferred jobs never keep the queue full (hardening finding 9) ------------------------------------------


def test_decide_gives_each_place_in_line_its_turn_and_takes_nothing(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=12)  # a token every 5 s
    for _ in range(10):
        assert quotas.try_acquire("a").admitted
        quotas.release("a")
    assert quotas.headroom("a") == 2
    assert quotas.decide("a", position=1).admitted
    waits = [quotas.decide("a", position=position).retry_after_s for position in (2, 3, 7)]
    assert waits == pytest.approx([5.0, 10.0, 30.0])
    assert quotas.headroom("a") == 2  # nothing was taken
    assert quotas.headroom("new") == 12


def test_headroom_is_the_tighter_of_the_limits(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=2, per_minute=60)
    assert quotas.headroom("a") == 2
    assert quotas.try_acquire("a").admitted
    assert quotas.headroom("a") == 1
    decision = quotas.decide("a", position=1)
    assert (decision.action, decision.retry_after_s) == ("defer", None)  # only a release frees that turn
    assert _quotas(clock).headroom("a") == float("inf")


def test_a_job_that_asked_earlier_goes_ahead_of_its_tenant_s_newer_ones(clock: FakeClock) -> None:
    quotas = _quotas(clock)
    queue: FairQueue[str] = FairQueue(quotas)
    queue.push("a", "a-new-1")
    clock.advance(1.0)
    queue.push("a", "a-new-2")
    queue.push("a", "a-back-from-a-deferral", since=clock() - 60.0)
    queue.push("a", "a-asked-between", since=clock() - 0.5)
    assert _drain(queue, quotas) == ["a-back-from-a-deferral", "a-new-1", "a-asked-between", "a-new-2"]


def test_no_overflow_below_the_limit_or_while_every_job_may_start(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=12)
    queue: FairQueue[str] = FairQueue(quotas)
    for index in range(12):
        queue.push("a", f"a{index}")
    assert queue.overflow(13) == []  # not full
    assert queue.overflow(12) == []  # full, but all 12 have a token: they only wait for a slot
    assert len(queue) == 12


def test_overflow_gives_up_the_newest_deferred_jobs_of_the_largest_tenant_until_half_is_free(
    clock: FakeClock,
) -> None:
    quotas = _quotas(clock, per_minute=12)
    for _ in range(12):  # "flood" used its burst
        assert quotas.try_acquire("flood").admitted
        quotas.release("flood")
    queue: FairQueue[str] = FairQueue(quotas)
    for index in range(12):
        queue.push("flood", f"flood{index}")
    for index in range(3):
        queue.push("small", f"small{index}")  # a full bucket: all three may start
    queue.push("slow", "slow0")
    for _ in range(12):
        quotas.try_acquire("slow")
    given_up = queue.overflow(16)
    assert len(queue) == 8
    assert [(tenant, job) for tenant, job, _ in given_up] == [("flood", f"flood{index}") for index in range(11, 3, -1)]
    assert [decision.retry_after_s for _, _, decision in given_up] == pytest.approx([60.0 - 5 * i for i in range(8)])
    assert all(decision.action == "defer" for _, _, decision in given_up)
    left = []
    while (item := queue.take()) is not None:
        left.append(item[1])
    assert sorted(left) == ["small0", "small1", "small2"]  # the others wait for tokens
    assert len(queue) == 5  # flood0-3 and slow0, deferred


def test_overflow_spreads_over_the_tenants_with_the_most_deferred_jobs(clock: FakeClock) -> None:
    quotas = _quotas(clock, max_inflight_per_tenant=1)
    queue: FairQueue[str] = FairQueue(quotas)
    for tenant, count in (("a", 5), ("b", 4), ("c", 1)):
        assert quotas.try_acquire(tenant).admitted  # one in flight each: every queued job is deferred
        for index in range(count):
            queue.push(tenant, f"{tenant}{index}")
    given_up = queue.overflow(10)
    assert len(queue) == 5
    assert sorted(job for _, job, _ in given_up) == ["a2", "a3", "a4", "b2", "b3"]
    assert {(decision.action, decision.retry_after_s) for _, _, decision in given_up} == {("defer", None)}


def test_overflow_rejects_jobs_whose_turn_is_past_the_max_wait(clock: FakeClock) -> None:
    quotas = _quotas(clock, per_minute=12, max_wait_s=30.0)
    for _ in range(12):
        assert quotas.try_acquire("a").admitted
        quotas.release("a")
    queue: FairQueue[str] = FairQueue(quotas)
    for index in range(8):
        queue.push("a", f"a{index}", since=clock() - 10.0)  # waited 10 s already (first deferred then)
    given_up = queue.overflow(8)
    decisions = {job: decision for _, job, decision in given_up}
    assert sorted(decisions) == ["a4", "a5", "a6", "a7"]
    assert decisions["a4"].action == "reject"  # its turn is in 25 s: 35 s after it first asked
    assert decisions["a4"].error("a").code == "rate_limited"
    assert all(decision.action == "reject" for decision in decisions.values())
    clock.advance(5.0)
    taken = queue.take()
    assert taken is not None
    assert taken[1:] == ("a0", QuotaDecision("admit"))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3)), min_size=1, max_size=40),
    st.integers(1, 20),
    st.integers(0, 6),
)
def test_overflow_leaves_room_or_only_jobs_that_may_start(
    pushes: list[tuple[str, int]], limit: int, inflight: int
) -> None:
    clock = FakeClock()
    quotas = TenantQuotas(max_inflight_per_tenant=3, per_minute=6, clock=clock)
    for _ in range(inflight):
        quotas.try_acquire("a")
    queue: FairQueue[int] = FairQueue(quotas)
    for number, (tenant, age) in enumerate(pushes):
        queue.push(tenant, number, since=clock() - age)
    before = len(queue)
    given_up = queue.overflow(limit)
    assert all(not decision.admitted for _, _, decision in given_up)
    assert len(queue) + len(given_up) == before
    if before < limit:
        assert given_up == []
    elif len(queue) > limit - max(1, limit // 2):  # still more than half full: nothing deferred is left
        while (item := queue.take()) is not None:
            assert item[2].admitted
        assert len(queue) == 0, "a deferred job stayed although the queue was more than half full"
