"""Records the API writes: requests, cancel commands and tenant webhook endpoints (and their tombstones), each in a
PRODUCER span whose context travels in the record's `traceparent` header, so the worker continues the caller's
trace."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind, Tracer
from pydantic import BaseModel

from consumer.telemetry.tracing import inject_headers, messaging_attributes

__all__ = ["RecordPublisher"]

log = logging.getLogger(__name__)


class RecordPublisher:
    def __init__(self, producer: AIOKafkaProducer, *, tracer: Tracer) -> None:
        self._producer = producer
        self._tracer = tracer

    async def publish(
        self, topic: str, key: str, value: BaseModel, *, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Send `value` as JSON keyed by `key` (with `headers` besides the trace's) and wait for the broker's
        acknowledgement."""
        await self._send(topic, key, value.model_dump_json(exclude_none=True).encode("utf-8"), headers)

    async def tombstone(self, topic: str, key: str) -> None:
        """A record without a value: on a compacted topic, `key` is gone."""
        await self._send(topic, key, None, ())

    async def _send(self, topic: str, key: str, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> None:
        with self._tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER) as span:
            span.set_attributes(messaging_attributes("send", topic, key=key))
            metadata = await self._producer.send_and_wait(
                topic, key=key.encode("utf-8"), value=value, headers=[*headers, *inject_headers()]
            )
            span.set_attributes(
                messaging_attributes("send", topic, key=key, partition=metadata.partition, offset=metadata.offset)
            )
        log.info("published %s to %s[%d]@%d", key, topic, metadata.partition, metadata.offset)
