"""Traces leave over OTLP/HTTP when, and only when, the standard OTEL_* variables say where: a minimal collector on
loopback receives what the worker's tracer provider exports."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from consumer.dev.embedded import free_port
from consumer.telemetry.otlp import tracer_provider_from_env


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[int, list[ExportTraceServiceRequest]]]:
    """A minimal OTLP/HTTP collector: decodes the protobuf body of POST /v1/traces."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, received
    await runner.cleanup()


async def test_export_is_configured_by_environment_variables_alone(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver
) -> None:
    port, received = otlp_receiver
    assert tracer_provider_from_env({}, default_service_name="vidgen-worker") is None  # off without an endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "vidgen-under-test")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
    provider = tracer_provider_from_env(os.environ, default_service_name="vidgen-worker")
    assert provider is not None
    with provider.get_tracer("test").start_as_current_span("process video.requests"):
        pass
    assert await asyncio.to_thread(provider.force_flush)
    await asyncio.to_thread(provider.shutdown)
    [message] = received
    resource = {kv.key: kv.value.string_value for kv in message.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "vidgen-under-test"
    assert resource["deployment.environment"] == "ci"
    assert message.resource_spans[0].scope_spans[0].spans[0].name == "process video.requests"
