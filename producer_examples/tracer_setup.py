"""Tracer providers for the example entry points. Built in `main()`, passed down, shut down on exit; never
installed globally, so tests and embedding applications keep their own."""

from __future__ import annotations

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["make_tracer_provider"]


def make_tracer_provider(service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    """A recording provider (so trace ids exist and travel in headers even with nothing exporting), exporting
    over OTLP/HTTP when `otlp_endpoint` is set (e.g. `http://jaeger:4318`)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces"))
        )
    return provider
