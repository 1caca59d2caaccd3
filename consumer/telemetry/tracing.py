"""Trace context through Kafka headers (W3C traceparent), and the messaging span attributes: the one place that
names them, for the worker, its publisher and the producer examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.util.types import AttributeValue

from consumer.core.job import Headers

__all__ = ["extract_context", "inject_headers", "messaging_attributes"]


def extract_context(headers: Sequence[tuple[str, bytes]] | None) -> Context:
    carrier = {}
    for name, value in headers or ():
        try:
            carrier[name.lower()] = value.decode("ascii")
        except (UnicodeDecodeError, AttributeError):
            continue  # a malformed header never breaks processing; the trace just starts fresh
    return propagate.extract(carrier)


def inject_headers(context: Context | None = None) -> Headers:
    """Headers carrying the current (or given) span's context to the next hop."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return [(name, value.encode("ascii")) for name, value in carrier.items()]


def messaging_attributes(
    operation: Literal["send", "process"],
    topic: str,
    *,
    key: str | None = None,
    group: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> dict[str, AttributeValue]:
    """The OpenTelemetry messaging semantic conventions for a Kafka record sent (PRODUCER span) or processed
    (CONSUMER span). `key` only when it is safe to show: callers never pass client bytes raw."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": topic,
    }
    if group is not None:
        attributes["messaging.consumer.group.name"] = group
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    if offset is not None:
        attributes["messaging.kafka.offset"] = offset
    if key is not None:
        attributes["messaging.kafka.message.key"] = key
    return attributes
