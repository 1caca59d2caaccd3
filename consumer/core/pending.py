"""Parsed requests waiting for a slot: in two lanes (interactive first, see `consumer/core/priority_lanes.py`), with
per-tenant quotas, handed out round-robin across tenants. Pure: it takes its limit, quotas, lane policy and the bulk
topic's name as values (`consumer.worker.policies.pending_jobs` reads them from the settings)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterator

from consumer.core.job import Job
from consumer.core.priority_lanes import Lane, LanePolicy, LaneQueue, lane_of
from consumer.core.quotas import QuotaDecision, TenantQuotas

__all__ = ["PendingJobs"]


class PendingJobs:
    """A bounded local queue between fetching and processing. While it is full the worker fetches nothing."""

    def __init__(self, *, limit: int, quotas: TenantQuotas, lanes: LanePolicy, bulk_topic: str) -> None:
        self.limit = limit
        self.quotas = quotas
        self._bulk_topic = bulk_topic
        self._queue: LaneQueue[Job] = LaneQueue(quotas, lane=self.lane, policy=lanes)

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._queue)

    @property
    def room(self) -> int:
        return max(0, self.limit - len(self._queue))

    @property
    def wake_in_s(self) -> float | None:
        """After `take` found nothing admissible: when the earliest deferred tenant's budget refills."""
        return self._queue.wake_in_s

    def lane(self, job: Job) -> Lane:
        return lane_of(job.request.priority, topic=job.record.topic, bulk_topic=self._bulk_topic)

    def waiting(self, lane: Lane) -> int:
        """Jobs of `lane` in the queue."""
        return self._queue.waiting(lane)

    def push(self, job: Job) -> None:
        waited = (job.received_at - job.first_asked_at).total_seconds()
        self._queue.push(job.request.tenant_id, job, since=self.quotas.now() - waited)

    def take(self, *, bulk_allowed: bool = True) -> tuple[Job, QuotaDecision] | None:
        """The next job to admit or refuse: interactive first, bulk when it is owed its share or nothing interactive
        is admissible, and only when `bulk_allowed` (the scheduler has a render slot bulk may hold)."""
        taken = self._queue.take(bulk_allowed=bulk_allowed)
        return None if taken is None else (taken[1], taken[2])

    def overflow(self) -> list[tuple[Job, QuotaDecision]]:
        """Deferred jobs given up so that fetching never stops for them (see `FairQueue.overflow`): the worker
        refuses the rejected ones and hands the others to the retry topic. Known waits come first, shortest first,
        so the retry topic stays in not-before order as far as it can (a partition waits for its head record)."""
        given_up = [(job, decision) for _, job, decision in self._queue.overflow(self.limit)]
        return sorted(given_up, key=lambda item: _due_order(item[1]))

    def release(self, job: Job) -> None:
        self.quotas.release(job.request.tenant_id)

    def drop(self, partitions: Collection[Hashable] | None = None) -> list[Job]:
        """Forget pending jobs (of these partitions, or all): their offsets stay uncommitted and are re-read."""
        return self.remove(lambda job: partitions is None or job.tp in partitions)

    def remove(self, match: Callable[[Job], bool]) -> list[Job]:
        """Take out the jobs `match` picks (revoked, cancelled), keeping the others' order."""
        return self._queue.remove(match)


def _due_order(decision: QuotaDecision) -> tuple[int, float]:
    wait = decision.retry_after_s
    return (0, wait) if wait is not None else (1, 0.0)
