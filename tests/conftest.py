"""Fixtures and rules every tier shares. The tiers are folders: `unit/` (no broker, no S3 server, no worker
process), `integration/` (a real tansu broker and moto S3 server started by its session fixtures, worker processes,
the real diffusers pipeline) and `gpu/` (needs CUDA, skipped without it). Every test under `integration/` carries the
`integration` marker and every test under `gpu/` the `gpu` marker, so `-m "not integration"` is the fast tiers.
Shared helpers are in `tests/support.py`.

Under pytest-xdist (`make test`) each module runs whole in one process (its module-scoped worker, API or browser is
made once) and the modules expected to take longest go first: a test's expected cost is its `timeout` mark where it
has one (the default of 60 s is for tests that take seconds), so a slow test's mark also schedules it early."""

from __future__ import annotations

import os
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

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallelism comes from the worker processes: one torch thread each (and in every process a test starts) costs
    # a fifth less CPU per render than two threads contending for the same two cores. Set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _cuda_available() -> bool:
    """Asked only when a GPU test was collected: importing torch costs seconds the unit tier does not spend."""
    import torch

    return bool(torch.cuda.is_available())


def _expected_cost(item: pytest.Item) -> float:
    """Seconds, roughly: the `timeout` mark of a test that needs more than the default, else a tier's typical."""
    mark = item.get_closest_marker("timeout")
    if mark is not None and mark.args:
        return float(mark.args[0])
    return 10.0 if "integration" in item.keywords else 0.5


def _slowest_modules_first(items: list[pytest.Item]) -> None:
    """Orders the modules by expected cost, largest first; `--dist loadscope --no-loadscope-reorder` hands them
    out to the worker processes in this order, each module whole (its module fixtures made once)."""
    modules: dict[Path, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.path, []).append(item)
    ordered = sorted(modules.values(), key=lambda tests: -sum(map(_expected_cost, tests)))  # stable for ties
    items[:] = [item for tests in ordered for item in tests]


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
    if hasattr(config, "workerinput"):  # a pytest-xdist worker process: every one orders its collection alike
        _slowest_modules_first(items)


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
