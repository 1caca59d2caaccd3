"""Records the API writes: requests, cancel and delete commands and tenant webhook endpoints (and their tombstones),
each in a PRODUCER span whose context travels in the record's `traceparent` header, so the worker continues the
caller's trace. Requests and commands also carry CloudEvents headers (`io.vidgen.video.requested`,
`io.vidgen.video.cancel_requested`, `io.vidgen.video.delete_requested`) when the publisher is given a source; the
worker never requires them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind, Tracer
from pydantic import BaseModel

from consumer.core.clock import WallClock, utc_now
from consumer.core.cloud_events import command_event
from consumer.telemetry.tracing import inject_headers, messaging_attributes
from schemas.events import VideoControl, VideoRequest

__all__ = ["RecordPublisher"]

log = logging.getLogger(__name__)

_COMMAND_KINDS: dict[str, Literal["cancel_requested", "delete_requested"]] = {
    "cancel": "cancel_requested",
    "delete": "delete_requested",
}


class RecordPublisher:
    def __init__(
        self, producer: AIOKafkaProducer, *, tracer: Tracer, source: str | None = None, clock: WallClock = utc_now
    ) -> None:
        self._producer = producer
        self._tracer = tracer
        self._source = source
        self._clock = clock

    async def publish(
        self, topic: str, key: str, value: BaseModel, *, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Send `value` as JSON keyed by `key` (with `headers` besides the trace's and an envelope's) and wait for the
        broker's acknowledgement."""
        encoded = value.model_dump_json(exclude_none=True).encode("utf-8")
        await self._send(topic, key, encoded, [*headers, *self._envelope(value)])

    def _envelope(self, value: BaseModel) -> list[tuple[str, bytes]]:
        if self._source is None or not isinstance(value, VideoRequest | VideoControl):
            return []
        return command_event(
            kind="requested" if isinstance(value, VideoRequest) else _COMMAND_KINDS[value.action],
            tenant_id=value.tenant_id,
            request_id=value.request_id,
            source=self._source,
            time=self._clock(),
        )

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
