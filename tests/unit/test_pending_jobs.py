"""The pending queue between fetching and starting: quotas per tenant, the max wait counted from the first wait, and
deferred jobs given up (soonest due first) so that fetching never stops for them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

from consumer.core.job import Job
from consumer.core.retries import Delivery
from consumer.settings import Settings
from consumer.worker.policies import pending_jobs
from schemas.events import VideoRequest
from tests.support import consumed, request_body

TP = TopicPartition("video.requests", 0)


# --- Pure decisions ---------------------------------------------------------------------------------------


def _job(offset: int, tenant: str, *, waiting_since: datetime | None = None) -> Job:
    body = request_body(f"r{offset}", tenant_id=tenant)
    since = None if waiting_since is None else int(waiting_since.timestamp() * 1000)
    record = consumed(TP.topic, TP.partition, offset, body)
    return Job(TP, record, VideoRequest.model_validate(body), datetime.now(UTC), Delivery(waiting_since_ms=since))


def test_max_wait_counts_from_the_first_time_a_request_waited() -> None:
    pending = pending_jobs(
        Settings(tenant_max_inflight=1, tenant_max_wait_s=30.0, max_pending_jobs=8), clock=time.monotonic
    )
    assert pending.quotas.try_acquire("a").admitted  # "a" is at its in-flight limit from now on
    pending.push(_job(1, "a", waiting_since=datetime.now(UTC) - timedelta(seconds=31)))  # back from a deferral
    pending.push(_job(2, "a"))
    taken = pending.take()
    assert taken is not None
    job, decision = taken
    assert (job.record.offset, decision.action) == (1, "reject")
    assert decision.error("a").code == "rate_limited"
    assert pending.take() is None  # the fresh one waits on
    assert len(pending) == 1


def test_pending_jobs_give_up_deferred_jobs_soonest_due_first_and_make_room() -> None:
    pending = pending_jobs(Settings(tenant_requests_per_minute=12, max_pending_jobs=4), clock=time.monotonic)
    for _ in range(12):
        assert pending.quotas.try_acquire("flood").admitted
        pending.quotas.release("flood")
    for offset in range(4):
        pending.push(_job(offset, "flood"))
    given_up = pending.overflow()
    assert [(job.record.offset, decision.action) for job, decision in given_up] == [(2, "defer"), (3, "defer")]
    waits = [decision.retry_after_s for _, decision in given_up]
    assert waits == pytest.approx([15.0, 20.0], abs=0.1)  # the 3rd and 4th token after the two kept
    assert pending.room == 2
