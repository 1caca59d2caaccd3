"""Settings of Kafka: the brokers and the consumer group (`KafkaSettings`), the topics and their record
sizes (`TopicSettings`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["KafkaSettings", "TopicSettings"]


class KafkaSettings(BaseSettings):
    """Connecting to the brokers, membership of the consumer group, and the topics created at start-up."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    kafka_bootstrap_servers: str = Field("localhost:9092", description="Comma-separated host:port list.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Use SASL_SSL with SASL, SSL for mutual TLS."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(None, description="Never logged.")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle that signs the brokers' certificates.")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(None, description="Private key of the client certificate.")
    kafka_enable_idempotence: bool = Field(
        True, description="Idempotent producer. Apache Kafka supports it; the embedded test broker does not."
    )
    consumer_group: str = Field("video-renderers", description="Consumer group of the workers.")
    group_instance_id: str | None = Field(None, description="Static membership id (rolling restarts).")
    session_timeout_ms: int = Field(30_000, ge=1_000, description="A member silent this long is evicted.")
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(
        300_000, ge=1_000, description="Renders may take longer: the worker keeps polling with partitions paused."
    )
    create_topics: bool = Field(True, description="Create missing topics at start-up.")
    topic_partitions: int = Field(8, ge=1, description="Partitions of topics created at start-up.")
    topic_replication_factor: int = Field(1, ge=1)


class TopicSettings(BaseSettings):
    """The topics the worker reads and writes, and how large their records may be."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    requests_topic: str = "video.requests"
    bulk_topic: str = Field(
        "video.requests.bulk",
        description="Requests with `priority: bulk` (backfills, catalog imports): rendered while no interactive "
        "request waits, with at least `VIDGEN_BULK_MIN_SHARE` of the renders while both wait.",
    )
    results_topic: str = "video.results"
    dlq_topic: str = "video.requests.dlq"
    retry_topic: str = Field(
        "video.requests.retry",
        description="Requests whose in-process retries ran out, and requests their tenant's quota deferred, wait "
        "here for a later try.",
    )
    template_topic: str = Field(
        "video.requests.template",
        description="Requests topic of the template pool (workers with `VIDGEN_MODEL=template`), where the job API "
        "and the product hook route requests they degrade. A template worker's bulk and retry topics add `.bulk` and "
        "`.retry`.",
    )
    progress_topic: str = Field("video.progress", description="Where progress events go when enabled.")
    progress_events: bool = Field(
        True, description="Publish `started` and `progress` events per request (the job API shows them)."
    )
    progress_interval_s: float = Field(2.0, ge=0, description="At most one progress event per request this often.")
    control_topic: str = Field(
        "video.control", description="Cancel commands (`VideoControl`, keyed by request id); the job API writes them."
    )
    control_retention_s: float = Field(
        86_400.0,
        gt=0,
        description="A cancel command applies to requests that arrive this long after it (also the control topic's "
        "`retention.ms` when the worker creates it).",
    )
    attempts_topic: str = Field(
        "video.requests.attempts",
        description="The crash guard's compacted topic: per request record (keyed by its position), how many workers "
        "started it without answering it.",
    )
    event_source: str = Field(
        "urn:vidgen",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="CloudEvents `ce_source` of every result, progress event and dead letter: a URI naming this "
        "deployment (the same on every worker, so a duplicate answer from another worker keeps its `ce_source` and "
        "`ce_id`).",
    )
    max_record_bytes: int = Field(1_048_576, ge=1_024, description="Records larger than this go to the DLQ unparsed.")
    max_event_bytes: int = Field(
        1_048_576,
        ge=262_144,
        description="Largest record the worker publishes, counted as the producer does (key, value, headers, batch "
        "overhead); at most the brokers' `message.max.bytes`. A DLQ copy that would be larger carries a stub instead.",
    )
