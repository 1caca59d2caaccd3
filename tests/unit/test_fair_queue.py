"""Fair shedding and wait estimates of the job API (issue 22, finding 3): one tenant's backlog counts against its own
limits; another tenant within its fair share is never refused, degraded or given a longer estimate by it. The
estimate follows the workers' round-robin across tenants; when the whole pool is full, the tenants at or over their
share are the ones refused. Pure."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.api.submission.shedding import Limits, shed, template_full
from consumer.api.submission.wait_estimate import QueueStats, TenantQueue, estimated_wait_s, jobs_ahead
from consumer.core.degrade import degrade
from consumer.core.priority_lanes import LANES, Lane, LanePolicy

# The service defaults: VIDGEN_API_MAX_QUEUED 100, MAX_WAIT_S 600, TENANT_MAX_QUEUED 25, TENANT_MAX_WAIT_S 600,
# VIDGEN_BULK_MIN_SHARE 0.1 (a bulk render at least once in 10).
DEFAULTS = Limits(
    max_queued=100, max_wait_s=600, tenant_max_queued=25, tenant_max_wait_s=600, bulk_period=LanePolicy(0.1).period
)
UNLIMITED_TENANT = Limits(max_queued=12, max_wait_s=1e12, tenant_max_queued=10**9, tenant_max_wait_s=1e12)


def pool(tenants: dict[str, TenantQueue], *, workers: int = 1, service_s: float = 60) -> QueueStats:
    return QueueStats(
        queued=sum(jobs.queued for jobs in tenants.values()),
        bulk_queued=sum(jobs.bulk_queued for jobs in tenants.values()),
        in_progress=sum(jobs.in_progress for jobs in tenants.values()),
        template_queued=sum(jobs.template_queued for jobs in tenants.values()),
        workers_active=workers,
        service_s=service_s,
        tenants=tenants,
    )


# The scenario: tenant B submitted 10 interactive jobs at once; one of B's earlier jobs renders on the one
# worker seen (60 s a job). Before: every tenant's estimate was (10 queued + 1 rendering) x 60 s = 660 s > 600 s.
FLOOD = pool({"b": TenantQueue(queued=10, in_progress=1)})


def test_another_tenants_burst_neither_refuses_nor_degrades_a_tenant_within_its_share() -> None:
    assert estimated_wait_s(FLOOD, "a", "interactive", bulk_period=10) == 120.0  # one of B's, then A's; + 1 rendering
    assert shed(FLOOD, tenant="a", lane="interactive", limits=DEFAULTS) is None
    assert degrade(busy=False, down=False, fallback="template") is None  # so `fallback=template` stays on the GPU pool
    # A bulk job waits behind at most 9 interactive jobs (the bulk lane's share), whoever's: 9 + 1 rendering.
    assert estimated_wait_s(FLOOD, "a", "bulk", bulk_period=10) == 600.0
    assert shed(FLOOD, tenant="a", lane="bulk", limits=DEFAULTS) is None


def test_a_backlog_counts_against_its_own_tenant() -> None:
    assert estimated_wait_s(FLOOD, "b", "interactive", bulk_period=10) == 660.0
    refused = shed(FLOOD, tenant="b", lane="interactive", limits=DEFAULTS)
    assert refused is not None and refused.reason == "wait_too_long" and refused.retry_after_s == 60
    assert "your job is 660 s (the limit per tenant is 600 s)" in refused.message
    many = pool({"b": TenantQueue(queued=25), "a": TenantQueue(queued=1)}, workers=0)
    refused = shed(many, tenant="b", lane="interactive", limits=DEFAULTS)
    assert refused is not None and refused.reason == "queue_full" and "you have 25 interactive" in refused.message
    assert shed(many, tenant="a", lane="interactive", limits=DEFAULTS) is None


def test_the_estimate_follows_the_round_robin_across_tenants() -> None:
    stats = pool(
        {
            "a": TenantQueue(queued=3),
            "b": TenantQueue(queued=10),
            "c": TenantQueue(queued=1),
            "d": TenantQueue(queued=40, bulk_queued=40),  # bulk: never ahead of an interactive job
        },
        workers=2,
        service_s=10,
    )
    # A's 4th job starts in round 4: A's 3, then up to 4 of B's and C's 1.
    assert jobs_ahead(stats, "a", "interactive", bulk_period=10) == 3 + 4 + 1
    assert estimated_wait_s(stats, "a", "interactive", bulk_period=10) == 40.0  # 8 jobs / 2 workers x 10 s
    # A newcomer waits one round: one job of each tenant with interactive work.
    assert jobs_ahead(stats, "new", "interactive", bulk_period=10) == 3
    # A bulk job: one round of the bulk lane (D's first), and up to 9 interactive jobs per bulk job started before it.
    assert jobs_ahead(stats, "new", "bulk", bulk_period=10) == 1 + 14
    assert jobs_ahead(stats, "new", "bulk", bulk_period=2) == 1 + 2  # a bulk job every other render
    assert jobs_ahead(stats, "new", "bulk", bulk_period=None) == 1 + 14  # strict priority: every interactive job


def test_when_the_pool_is_full_the_tenant_furthest_over_its_share_is_refused_first() -> None:
    # 12 jobs queued, the limit. A share is the limit over the tenants with jobs queued, the caller counted.
    full = pool({"b": TenantQueue(queued=8), "c": TenantQueue(queued=4)}, workers=0)
    answers = {tenant: shed(full, tenant=tenant, lane="interactive", limits=UNLIMITED_TENANT) for tenant in "abc"}
    assert answers["a"] is None  # share 12 / 3 = 4, none queued
    assert answers["c"] is None  # share 12 / 2 = 6, 4 queued
    refused = answers["b"]  # share 6, 8 queued
    assert refused is not None and refused.reason == "queue_full"
    assert (
        "12 interactive jobs are queued (the limit is 12) and 8 of them are yours, at or over your fair share of 6"
        in (refused.message)
    )
    # A and C got in: 14 queued, three tenants, a share of 4. C is over it now too; A is not.
    fuller = pool({"a": TenantQueue(queued=1), "b": TenantQueue(queued=8), "c": TenantQueue(queued=5)}, workers=0)
    answers = {tenant: shed(fuller, tenant=tenant, lane="interactive", limits=UNLIMITED_TENANT) for tenant in "abc"}
    assert [tenant for tenant, answer in answers.items() if answer is not None] == ["b", "c"]


def test_a_pool_whose_queue_takes_too_long_is_full_too() -> None:
    # 1 worker, 60 s a job, 600 s: the pool starts 10 jobs in time, 9 once one is rendering; B's 10 fill it.
    limits = Limits(max_queued=100, max_wait_s=600, tenant_max_queued=10**9, tenant_max_wait_s=1e12)
    refused = shed(FLOOD, tenant="b", lane="interactive", limits=limits)
    assert refused is not None and refused.reason == "wait_too_long"
    assert "take 660 s to start (the limit is 600 s) and 10 of them are yours, at or over your fair share of 9" in (
        refused.message
    )
    assert shed(FLOOD, tenant="a", lane="interactive", limits=limits) is None  # share 4.5, none queued


def test_the_template_pool_is_shared_fairly_too() -> None:
    stats = pool({"b": TenantQueue(template_queued=4)})
    assert template_full(stats, tenant="b", max_queued=4)
    assert not template_full(stats, tenant="a", max_queued=4)  # share 4 / 2 = 2: A has none
    assert not template_full(stats, tenant="b", max_queued=5)


_TENANTS = st.dictionaries(
    st.sampled_from(["b", "c", "d", "e"]),
    st.builds(
        lambda interactive, bulk, rendering: TenantQueue(
            queued=interactive + bulk, bulk_queued=bulk, in_progress=rendering
        ),
        st.integers(0, 60),
        st.integers(0, 60),
        st.integers(0, 2),
    ),
    max_size=4,
)


@given(tenants=_TENANTS, workers=st.integers(0, 4), lane=st.sampled_from(LANES))
def test_a_tenant_with_nothing_queued_is_never_refused_by_the_pools_limits(
    tenants: dict[str, TenantQueue], workers: int, lane: Lane
) -> None:
    stats = pool(tenants, workers=workers, service_s=30)
    limits = Limits(max_queued=10, max_wait_s=60, tenant_max_queued=10**9, tenant_max_wait_s=1e12)
    assert shed(stats, tenant="a", lane=lane, limits=limits) is None


@given(tenants=_TENANTS, own=st.integers(0, 20), extra=st.integers(1, 1000))
def test_another_tenants_backlog_past_one_job_per_round_never_lengthens_an_estimate(
    tenants: dict[str, TenantQueue], own: int, extra: int
) -> None:
    tenants = {**tenants, "a": TenantQueue(queued=own)}
    rounds = own + 1
    flooded = {
        name: TenantQueue(queued=jobs.queued + extra, bulk_queued=jobs.bulk_queued, in_progress=jobs.in_progress)
        if name != "a" and jobs.queued - jobs.bulk_queued >= rounds
        else jobs
        for name, jobs in tenants.items()
    }
    before = estimated_wait_s(pool(tenants), "a", "interactive", bulk_period=10)
    assert estimated_wait_s(pool(flooded), "a", "interactive", bulk_period=10) == before
