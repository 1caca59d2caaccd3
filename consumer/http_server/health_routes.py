"""The probes every process of ours serves: /healthz (alive), /readyz (can make progress), /metrics (Prometheus);
`start_http` is the worker's HTTP side, which serves nothing else."""

from __future__ import annotations

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


def add_probe_routes(
    app: web.Application, *, checks: Mapping[str, ReadinessCheck], registry: CollectorRegistry
) -> None:
    """/healthz (the event loop answers: alive), /readyz (every check passes; each one's state in the body) and
    /metrics (the registry's page), as every server of ours exposes them."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results = {name: await check() for name, check in checks.items()}
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
