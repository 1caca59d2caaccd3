"""Request metrics every HTTP server of ours exposes (the job API, the product hook): answers by route and status,
and their latency, on the server's own registry under its own prefix."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram

from consumer.http_server.server_spans import route_of

__all__ = ["HttpMetrics", "measured"]

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class HttpMetrics:
    """`<prefix>_requests_total{method,route,status}` and `<prefix>_request_seconds{method,route}`."""

    def __init__(self, prefix: str, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            f"{prefix}_requests",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            f"{prefix}_request_seconds",
            "Time to answer (headers of an event stream).",
            ["method", "route"],
            buckets=_SECONDS,
            registry=registry,
        )


def measured(metrics: HttpMetrics) -> Middleware:
    """Counts every answer by route template and the status the client got (install it outside the middleware that
    turns errors into answers)."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            raise
        else:
            status = response.status
            return response
        finally:
            route = route_of(request)
            metrics.requests.labels(method=request.method, route=route, status=str(status)).inc()
            metrics.request_seconds.labels(method=request.method, route=route).observe(time.perf_counter() - started)

    return measure
