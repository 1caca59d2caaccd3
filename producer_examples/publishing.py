"""Publishing a request: the PRODUCER span that starts the trace, and its traceparent in the record headers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import SpanKind, Tracer

from consumer.core.job import Headers
from consumer.core.priority_lanes import topic_for
from consumer.settings import Settings
from consumer.telemetry.tracing import inject_headers, messaging_attributes
from schemas.events import VideoRequest

__all__ = ["RequestPublisher"]

log = logging.getLogger(__name__)


class RequestPublisher:
    """Sends VideoRequests to the requests topic of their lane (`video.requests`, or `video.requests.bulk` for
    `priority: bulk`), keyed by request_id, and waits for the broker's ack."""

    def __init__(self, producer: AIOKafkaProducer, *, settings: Settings, tracer: Tracer) -> None:
        self._producer = producer
        self._settings = settings
        self._tracer = tracer

    async def publish(
        self, request: VideoRequest, *, extra_headers: Sequence[tuple[str, bytes]] = (), topic: str | None = None
    ) -> Headers:
        """Publish one request to `topic` (None: its lane's); returns the headers sent (traceparent included)."""
        settings = self._settings
        if topic is None:
            topic = topic_for(request.priority, requests_topic=settings.requests_topic, bulk_topic=settings.bulk_topic)
        with self._tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER) as span:
            span.set_attributes(messaging_attributes("send", topic, key=request.request_id))
            span.set_attribute("vidgen.tenant_id", request.tenant_id)
            headers = [*extra_headers, *inject_headers()]
            metadata = await self._producer.send_and_wait(
                topic,
                key=request.request_id.encode("utf-8"),
                value=request.model_dump_json(exclude_none=True).encode("utf-8"),
                headers=headers,
            )
            span.set_attributes(
                messaging_attributes(
                    "send", topic, key=request.request_id, partition=metadata.partition, offset=metadata.offset
                )
            )
        log.info(
            "published request %s to %s[%d]@%d",
            request.request_id,
            topic,
            metadata.partition,
            metadata.offset,
            extra={"request_id": request.request_id, "topic": topic},
        )
        return headers
