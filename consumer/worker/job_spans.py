"""A job's trace span and log context: the CONSUMER `process` span of a consumed record (OpenTelemetry messaging
conventions, continuing the producer's trace from the record's headers), the log fields every record of the job
carries, and how an error code marks a span."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from consumer.core.intake import usable_id
from consumer.core.job import Record
from consumer.telemetry.logs import job_context
from consumer.telemetry.tracing import extract_context, messaging_attributes

__all__ = ["job_logs", "mark_error", "process_span"]


@contextlib.contextmanager
def process_span(tracer: Tracer, record: Record, group: str) -> Iterator[Span]:
    """A process span with the OpenTelemetry messaging semantic conventions for a consumed Kafka record."""
    with tracer.start_as_current_span(
        f"process {record.topic}", context=extract_context(record.headers), kind=SpanKind.CONSUMER
    ) as span:
        # Only a well-formed request id: a key is client bytes (any length, any characters) and is never echoed raw.
        key = None if record.key is None else usable_id(record.key.decode("ascii", "replace"))
        span.set_attributes(
            messaging_attributes(
                "process", record.topic, key=key, group=group, partition=record.partition, offset=record.offset
            )
        )
        yield span


def job_logs(record: Record, request_id: str | None, tenant_id: str | None) -> contextlib.AbstractContextManager[None]:
    """The log fields of every record logged for this job: request, tenant, topic, partition, offset."""
    return job_context(
        request_id=request_id, tenant_id=tenant_id, topic=record.topic, partition=record.partition, offset=record.offset
    )


def mark_error(span: Span, code: str) -> None:
    span.set_status(Status(StatusCode.ERROR, code))
    span.set_attribute("error.type", code)
