"""Trace context through Kafka headers (W3C traceparent), and the messaging span attributes."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import propagate
from opentelemetry.context import Context

from consumer.core.job import Headers

__all__ = ["extract_context", "inject_headers"]


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
