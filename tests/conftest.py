"""Fixtures and rules every tier shares. The tiers are folders: `unit/` (no broker, no S3 server, no worker
process), `integration/` (a real tansu broker and moto S3 server started by its session fixtures, worker processes,
the real diffusers pipeline) and `gpu/` (needs CUDA, skipped without it). Every test under `integration/` carries the
`integration` marker and every test under `gpu/` the `gpu` marker, so `-m "not integration"` is the fast tiers.
Shared helpers are in `tests/support.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from consumer.render.renderer import Renderer

_TIERS = Path(__file__).parent


def _cuda_available() -> bool:
    """Asked only when a GPU test was collected: importing torch costs seconds the unit tier does not spend."""
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_collected = any("gpu" in item.keywords or item.path.is_relative_to(_TIERS / "gpu") for item in items)
    skip_gpu = None if not gpu_collected or _cuda_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        tier = item.path.relative_to(_TIERS).parts[0] if item.path.is_relative_to(_TIERS) else ""
        if tier == "integration":
            item.add_marker(pytest.mark.integration)
        elif tier == "gpu":
            item.add_marker(pytest.mark.gpu)
        if skip_gpu is not None and "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A fresh tracer provider per test recording into memory, never installed globally."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def make_renderer() -> Iterator[Callable[[object], Renderer]]:
    """Renderers around test pipelines; closed only after the workers using them have stopped."""
    from consumer.render.renderer import Renderer  # torch: loaded by the tests that use renderers only

    made: list[Renderer] = []

    def make(pipeline: object) -> Renderer:
        made.append(Renderer(lambda: pipeline))
        return made[-1]

    yield make
    for renderer in made:
        renderer.close()
