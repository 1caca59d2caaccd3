"""The probes every process of ours serves: /healthz (alive), /readyz (can make progress), /metrics (Prometheus);
`start_http` is the worker's HTTP side, which serves nothing else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumer.telemetry.worker_metrics import Metrics

__all__ = ["ReadinessCheck", "add_probe_routes", "bound_port", "start_http"]

# Each check answers None when fine, or a sentence saying what is wrong.
ReadinessCheck = Callable[[], Awaitable[str | None]]


async def start_http(*, host: str, port: int, metrics: Metrics, checks: dict[str, ReadinessCheck]) -> web.AppRunner:
    """Serve until the returned runner is cleaned up. Port 0 picks a free port (see `bound_port`)."""
    app = web.Application()
    add_probe_routes(app, checks=checks, registry=metrics.registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


class _Readiness:
    """The checks' answers, asked for by one caller at a time and kept for `cache_s`: however often /readyz is
    called, the dependencies are asked at most once per `cache_s` (and never by two callers at once)."""

    def __init__(
        self, checks: Mapping[str, ReadinessCheck], *, cache_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._checks = checks
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._answers: dict[str, str | None] = {}
        self._asked_at = float("-inf")

    async def answers(self) -> dict[str, str | None]:
        async with self._lock:
            if self._monotonic() - self._asked_at >= self._cache_s:
                self._answers = {name: await check() for name, check in self._checks.items()}
                self._asked_at = self._monotonic()
            return self._answers


def add_probe_routes(
    app: web.Application, *, checks: Mapping[str, ReadinessCheck], registry: CollectorRegistry, cache_s: float = 0.0
) -> None:
    """/healthz (the event loop answers: alive), /readyz (every check passes; each one's state in the body, as last
    asked, at most `cache_s` ago) and /metrics (the registry's page), as every server of ours exposes them."""
    readiness = _Readiness(checks, cache_s=cache_s)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results = await readiness.answers()
        ready = all(problem is None for problem in results.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {name: problem or "ok" for name, problem in results.items()},
        }
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_get("/metrics", metrics_view, allow_head=False)


def bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("HTTP server is not listening")
