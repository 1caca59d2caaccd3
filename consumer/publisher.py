"""Everything the worker writes to Kafka: results, dead letters, retry-topic copies. Each send waits for the
broker's ack and rides out broker outages with backoff: until it returns, the record's offset stays uncommitted."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential, wait_random

from consumer.settings import Settings
from consumer.tracing import Headers, inject_headers
from schemas.events import VideoResult

__all__ = ["Publisher", "dead_letter_headers"]

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, settings: Settings, *, tracer: Tracer | None = None) -> None:
        self._producer = producer
        self._settings = settings
        self._tracer = tracer or trace.get_tracer(__name__)

    async def result(self, result: VideoResult) -> None:
        topic = self._settings.results_topic
        with self._tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER) as span:
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.destination.name": topic,
                    "messaging.kafka.message.key": result.request_id,
                }
            )
            await self._send(
                topic,
                key=result.request_id.encode("utf-8"),
                value=result.model_dump_json().encode("utf-8"),
                headers=inject_headers(),  # this span's context: the result joins the request's trace
            )
        log.info("request %s %s", result.request_id, result.status)

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], *, code: str, message: str) -> None:
        """The original key, value and headers, plus what went wrong and where the record came from."""
        headers = dead_letter_headers(record, code=code, message=message, worker_id=self._settings.worker_id)
        await self._send(self._settings.dlq_topic, key=record.key, value=record.value, headers=headers)
        log.warning("record %s[%d]@%d dead-lettered: %s", record.topic, record.partition, record.offset, code)

    async def retry_later(self, record: ConsumerRecord[bytes, bytes], *, headers: Headers) -> None:
        await self._send(self._settings.retry_topic, key=record.key, value=record.value, headers=headers)

    async def _send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(KafkaError),
            wait=wait_exponential(multiplier=0.2, max=10) + wait_random(0, 0.5),
            before_sleep=_log_retry(topic),
        ):
            with attempt:
                await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)


def dead_letter_headers(record: ConsumerRecord[bytes, bytes], *, code: str, message: str, worker_id: str) -> Headers:
    """A DLQ record's headers: the original ones, then the error and the record's origin (see the README)."""
    return [
        *list(record.headers or ()),
        ("vidgen-error-code", code.encode()),
        ("vidgen-error-message", message.encode("utf-8")),
        ("vidgen-original-topic", record.topic.encode("utf-8")),
        ("vidgen-original-partition", str(record.partition).encode()),
        ("vidgen-original-offset", str(record.offset).encode()),
        ("vidgen-worker-id", worker_id.encode("utf-8")),
    ]


def _log_retry(topic: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("publish to %s failed (attempt %d), retrying: %r", topic, state.attempt_number, error)

    return before_sleep
