"""Tracing set up from the standard OpenTelemetry environment variables, once, in the entry point.

OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT turns export on; OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL picks `http/protobuf`
(default) or `grpc`; OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER(_ARG) are read by the SDK
itself. With no endpoint (or OTEL_TRACES_EXPORTER=none) tracing stays a no-op: trace context from a request's
`traceparent` still flows to its result, but nothing is recorded.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

__all__ = ["tracer_provider_from_env"]


def tracer_provider_from_env(env: Mapping[str, str], *, default_service_name: str) -> TracerProvider | None:
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    # Attributes given here lose to none of the environment's: only fill in a name when none was configured.
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {"service.name": default_service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    return provider


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    if protocol.strip().lower() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()  # endpoint, headers, TLS and timeout from the same environment variables
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()
