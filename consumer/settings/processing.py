"""Settings of how the worker processes requests: stage slots and lanes (`SchedulingSettings`), retries
(`RetrySettings`), content policy and tenant quotas (`TenantPolicySettings`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumer.settings.values import split_csv

__all__ = ["RetrySettings", "SchedulingSettings", "TenantPolicySettings"]


class SchedulingSettings(BaseSettings):
    """How many jobs a worker holds at each stage, lanes, rebalances, drains and the crash guard."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    max_inflight_jobs: int = Field(
        2,
        ge=1,
        description="Jobs before their render ends (start image, memory admission, render): one renders while the "
        "next is prepared. Bounded further by free device memory.",
    )
    max_finishing_jobs: int = Field(
        4,
        ge=0,
        description="Jobs past their render (encode, upload, publish) at once; new jobs start only while fewer are. "
        "0: a job keeps its render slot until it is answered (the sequential design).",
    )
    max_pending_jobs: int = Field(
        16,
        ge=1,
        description="Fetched requests waiting for a slot; while full, partitions are paused. Requests deferred by "
        "their tenant's quota never keep it full: they move to the retry topic.",
    )
    bulk_min_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="While interactive and bulk requests both wait, at least this share of the renders a worker starts "
        "is bulk (0.1: one in ten); 0: bulk waits as long as interactive requests keep coming.",
    )
    rebalance_grace_s: float = Field(
        30.0, ge=0, description="On revocation, in-flight jobs get this long to finish and commit, else are abandoned."
    )
    shutdown_grace_s: float = Field(60.0, ge=0, description="Time an in-flight job gets to finish on SIGTERM.")
    max_worker_crashes: int = Field(
        2,
        ge=1,
        description="A request whose earlier starts took down this many workers is answered `worker_crashed` (and "
        "dead-lettered) instead of being started again.",
    )


class RetrySettings(BaseSettings):
    """Retries of transient failures (storage, image download, render crash, broker)."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    retry_attempts: int = Field(3, ge=1, description="Attempts in process before a request moves to the retry topic.")
    retry_backoff_s: float = Field(1.0, gt=0, description="First backoff; doubles per attempt, with jitter.")
    retry_backoff_max_s: float = Field(30.0, gt=0)
    retry_deadline_s: float = Field(120.0, gt=0, description="Total time in-process retries of one delivery may take.")
    retry_topic_delay_s: float = Field(30.0, ge=0, description="Not-before delay of a request sent to the retry topic.")
    retry_topic_rounds: int = Field(
        2, ge=0, description="Trips through the retry topic before the request fails for good (and is dead-lettered)."
    )


class TenantPolicySettings(BaseSettings):
    """Content policy and tenant quotas."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    banned_terms: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated banned terms or phrases (`word*` matches a prefix); rejects `content_policy`."
    )
    banned_terms_file: str | None = Field(None, description="UTF-8 file of banned terms, one per line, `#` comments.")
    policy_check_negative_prompt: bool = Field(False, description="Also apply banned terms to negative_prompt.")
    tenant_max_inflight: int | None = Field(None, ge=1, description="Jobs of one tenant at once; unset: unlimited.")
    tenant_requests_per_minute: int | None = Field(
        None, ge=1, description="Token bucket per tenant (burst = the same number); unset: unlimited."
    )
    tenant_max_wait_s: float | None = Field(
        None, ge=0, description="A request deferred longer than this fails with `rate_limited`; unset: waits."
    )

    @field_validator("banned_terms", mode="before")
    @classmethod
    def _split_terms(cls, value: object) -> object:
        return split_csv(value)
