"""Kafka clients built from settings: security options, producer, consumer, topic creation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import BrokerResponseError
from aiokafka.helpers import create_ssl_context
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from consumer.errors import ProducerUnsupported
from consumer.kafka.topic_access import worker_topics
from consumer.settings import Settings

__all__ = [
    "client_options",
    "ensure_topics",
    "follower_consumer",
    "make_consumer",
    "make_producer",
    "make_state_consumer",
    "record_bytes",
    "start_producer",
    "topic_configs",
    "worker_topics",
]

log = logging.getLogger(__name__)

_CREATED = (0, 36)  # no error, or TOPIC_ALREADY_EXISTS (another worker was first)
# tansu answers a fetch only once its max wait expires, so this bounds how late a cancel is seen there; Apache Kafka
# answers as soon as a record arrives.
_STATE_FETCH_WAIT_MS = 50


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection and security options shared by every client (SASL over SSL, mTLS, CA file)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": f"vidgen-{settings.worker_id}",
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    if settings.kafka_sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
        linger_ms=5,
        # The bound on every record the worker writes; `record_bytes` measures records the same way.
        max_request_size=settings.max_event_bytes,
    )


def follower_consumer(settings: Settings, *, fetch_max_wait_ms: int, **options: Any) -> AIOKafkaConsumer:
    """A consumer without a group, starting from the earliest record, for readers that follow whole topics (the
    job API's view, the webhook endpoints): every replica sees everything, nothing is committed."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        **options,
    )


async def start_producer(settings: Settings) -> AIOKafkaProducer:
    """A started producer, or an error naming the fix: `ProducerUnsupported` when the brokers refuse the idempotent
    producer (tansu, some managed services), else what `start()` raised. A producer that failed to start is stopped
    here, so nothing is left unclosed."""
    producer = make_producer(settings)
    try:
        await producer.start()
    except BrokerResponseError as exc:  # past the bootstrap, start() asks the brokers for a producer id, nothing else
        await producer.stop()
        if not settings.kafka_enable_idempotence:
            raise
        raise ProducerUnsupported(
            f"the brokers refused an idempotent producer (InitProducerId: {type(exc).__name__}): set "
            "VIDGEN_KAFKA_ENABLE_IDEMPOTENCE=false where they do not support it (tansu, some managed services), or "
            "grant the IdempotentWrite permission"
        ) from exc
    except BaseException:
        await producer.stop()
        raise
    return producer


def record_bytes(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """Size of a one-record batch exactly as the producer checks it against `max_request_size`."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


def make_consumer(settings: Settings, listener: ConsumerRebalanceListener) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        group_id=settings.consumer_group,
        group_instance_id=settings.group_instance_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        # Long enough for revoked partitions' in-flight jobs to finish and commit before the group moves on.
        rebalance_timeout_ms=int((settings.rebalance_grace_s + 10) * 1000),
        # Room for a request at the record limit plus its headers, and for the worker's own retry-topic copies (at
        # most max_event_bytes). A larger record still arrives (brokers return the first batch whatever its size)
        # and is dead-lettered.
        max_partition_fetch_bytes=max(settings.max_record_bytes * 2, settings.max_event_bytes),
    )
    consumer.subscribe([settings.requests_topic, settings.bulk_topic, settings.retry_topic], listener=listener)
    return consumer


def make_state_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The consumer of `consumer.kafka.state_topics.StateTopicsFollower`: no group, every partition from the start."""
    return AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=_STATE_FETCH_WAIT_MS,
    )


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Configs of the topics created with them: the control topic keeps the latest command per request id, each for
    the control retention; the attempts topic keeps the latest count per record (an answered one leaves a tombstone,
    which compaction then removes); the webhooks topic keeps the latest state of each tenant endpoint (a deleted one
    leaves a tombstone)."""
    retention_ms = str(int(settings.control_retention_s * 1000))
    return {
        settings.control_topic: {"cleanup.policy": "compact,delete", "retention.ms": retention_ms},
        settings.attempts_topic: {"cleanup.policy": "compact"},
        settings.webhooks_topic: {"cleanup.policy": "compact"},
    }


async def ensure_topics(settings: Settings, topics: list[str]) -> None:
    """Create the topics that are missing (with `topic_configs` where the brokers accept them). Existing topics are
    left exactly as they are."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            configs = topic_configs(settings)
            response = await admin.create_topics([_new_topic(settings, name, configs.get(name)) for name in missing])
            refused = [name for name, code, *_ in response.topic_errors if code not in _CREATED and name in configs]
            if refused:
                log.warning("the brokers refused the configs of %s: created without them", ", ".join(refused))
                await admin.create_topics([_new_topic(settings, name, None) for name in refused])
            log.info("created topics %s", ", ".join(missing))
    finally:
        await admin.close()


def _new_topic(settings: Settings, name: str, configs: dict[str, str] | None) -> NewTopic:
    return NewTopic(name, settings.topic_partitions, settings.topic_replication_factor, topic_configs=configs)
