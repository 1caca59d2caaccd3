"""The worker's HTTP probes: `/healthz`, `/readyz` and `/metrics` from before the model loads until the worker has
stopped; ready once the model is warm, the worker is in its consumer group with brokers answering, and S3 answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from consumer.errors import VidgenError
from consumer.http_server.health_routes import ReadinessCheck, bound_port, start_http
from consumer.object_store import ObjectStore
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.consume_loop import ConsumeLoop

__all__ = ["Readiness", "probes"]

_S3_CHECK_TIMEOUT_S = 3.0


class Readiness:
    """What /readyz asks: the model is warm, the worker is in its group with brokers answering, S3 answers."""

    def __init__(self, renderer: Renderer, store: ObjectStore) -> None:
        self._renderer = renderer
        self._store = store
        self.worker: ConsumeLoop | None = None

    def checks(self) -> dict[str, ReadinessCheck]:
        return {"model": self._model, "consumer_group": self._group, "s3": self._s3}

    async def _model(self) -> str | None:
        return None if self._renderer.state in ("ready", "busy") else f"model is {self._renderer.state}"

    async def _group(self) -> str | None:
        if self.worker is None or not self.worker.joined:
            return "not a member of the consumer group yet"
        return await self.worker.check_broker()

    async def _s3(self) -> str | None:
        try:
            await asyncio.wait_for(self._store.ping(), _S3_CHECK_TIMEOUT_S)
        except (VidgenError, TimeoutError) as exc:
            return f"object storage unreachable: {exc}"
        return None


@contextlib.asynccontextmanager
async def probes(
    settings: Settings, metrics: Metrics, readiness: Readiness, on_http_port: Callable[[int], None] | None
) -> AsyncIterator[None]:
    """/healthz, /readyz and /metrics, from before the model loads until the worker has stopped."""
    http = await start_http(
        host=settings.http_host, port=settings.http_port, metrics=metrics, checks=readiness.checks()
    )
    try:
        if on_http_port is not None:
            on_http_port(bound_port(http))
        yield
    finally:
        await http.cleanup()
