"""The pure core's policy values, read from `Settings` by the worker: the core takes small values and never the whole
settings object (`consumer/core/` imports nothing of `consumer.settings`)."""

from __future__ import annotations

from consumer.core.clock import Monotonic
from consumer.core.pending import PendingJobs
from consumer.core.priority_lanes import LanePolicy
from consumer.core.quotas import TenantQuotas
from consumer.core.retries import RetryPolicy
from consumer.settings import RetrySettings, Settings

__all__ = ["pending_jobs", "retry_policy"]


def pending_jobs(settings: Settings, *, clock: Monotonic) -> PendingJobs:
    """The bounded pending queue with its tenant quotas and lanes (`VIDGEN_MAX_PENDING_JOBS`, `VIDGEN_TENANT_*`,
    `VIDGEN_BULK_MIN_SHARE`, `VIDGEN_BULK_TOPIC`)."""
    quotas = TenantQuotas(
        max_inflight_per_tenant=settings.tenant_max_inflight,
        per_minute=settings.tenant_requests_per_minute,
        max_wait_s=settings.tenant_max_wait_s,
        clock=clock,
    )
    return PendingJobs(
        limit=settings.max_pending_jobs,
        quotas=quotas,
        lanes=LanePolicy(settings.bulk_min_share),
        bulk_topic=settings.bulk_topic,
    )


def retry_policy(settings: RetrySettings) -> RetryPolicy:
    """In-process attempts and backoff, then the retry topic's delay and rounds (`VIDGEN_RETRY_*`)."""
    return RetryPolicy(
        attempts=settings.retry_attempts,
        backoff_s=settings.retry_backoff_s,
        backoff_max_s=settings.retry_backoff_max_s,
        deadline_s=settings.retry_deadline_s,
        topic_delay_s=settings.retry_topic_delay_s,
        topic_rounds=settings.retry_topic_rounds,
    )
