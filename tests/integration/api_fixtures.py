"""Fixtures of the job API's integration tests, loaded by their modules through `pytest_plugins`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.dev.embedded import isolated_settings
from tests.integration.api_helpers import (
    ApiProcess,
    ApiStack,
    IdentityProvider,
    api_settings,
    new_key,
    running_api,
)


@pytest.fixture(scope="module")
async def identity() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    await provider.start()
    yield provider
    await provider.stop()


@pytest.fixture
def api_processes() -> Iterator[list[ApiProcess]]:
    """Processes the test starts go in here; all are killed at the end."""
    started: list[ApiProcess] = []
    yield started
    for process in started:
        process.stop(kill=True)


@pytest.fixture(scope="module")
async def api_stack(
    request: pytest.FixtureRequest,
    broker: str,
    s3_endpoint: str,
    identity: IdentityProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ApiStack]:
    """One API for the whole module, on topics of its own; the module's API_OVERRIDES and SETTINGS_OVERRIDES
    (dicts) adjust its settings. No worker: jobs stay queued unless a test starts one."""
    run = uuid.uuid4().hex[:8]
    settings = isolated_settings(
        broker, s3_endpoint, run, topic_partitions=2, **getattr(request.module, "SETTINGS_OVERRIDES", {})
    )
    api = api_settings(tmp_path_factory.mktemp("api"), identity.url, **getattr(request.module, "API_OVERRIDES", {}))
    keys = {tenant: new_key(api, tenant) for tenant in ("shop-1", "shop-2")}
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with running_api(settings, api, tracer=provider.get_tracer("test")) as server:
        yield ApiStack(settings, api, server, keys, exporter)
    provider.shutdown()
