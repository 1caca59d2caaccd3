"""The aiohttp applications: the API's (tenants) and the operator's (probes and metrics, on a port of its own).

Every request to the API passes these middlewares, outermost first:

1. the SERVER span (`consumer.http_server.server_spans`: a root span, callers are outside the trust boundary), whose
   trace the answer names (`traceresponse`, `consumer.api.console.trace_response`);
2. the request metrics (`consumer.http_server.request_metrics`), by route and the status the client got;
3. errors: every failure as `{"error": {...}}`, aiohttp's own (404, 405) included;
4. the connection guard: the body deadline, and the connection's place in the eviction order while its body arrives;
5. the `/v1` gate, on the headers alone, before a byte of the body is read: 503 until the view has caught up, 401
   without a valid credential (on the content route a content link's `token` is one,
   `consumer.api.auth.content_links`), 429 past the tenant's rate or when its calls in hand already fill its share of
   the connections (`VIDGEN_API_TENANT_CONNECTION_SHARE`), 422 for a query parameter the operation does not take.

Only then does a handler read a body (`consumer.api.submission.body`), streaming. A request refused before its body
was read is answered at once; aiohttp then discards (never buffers) what is still arriving of that body for at most
`LINGER_S`, so the client can read the answer, and closes the connection.

`/` and `/console/` serve the web console (`consumer.api.console`), which also sets the security headers of every
answer; `/openapi.json` this API's document. `/healthz`, `/readyz` and `/metrics` are on the operator port only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import trace
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry

from consumer.api.api_metrics import ApiMetrics
from consumer.api.auth.authenticator import Authenticator
from consumer.api.auth.content_links import LinkIssuer
from consumer.api.console import Console, trace_response
from consumer.api.routes.error_answers import error_middleware
from consumer.api.routes.event_streams import EventStreams
from consumer.api.routes.model_list import ModelRoutes
from consumer.api.routes.submissions import Submissions
from consumer.api.routes.videos import CALLER, Handlers
from consumer.api.routes.webhooks import WebhookRoutes
from consumer.api.submission.body import defer_continue
from consumer.core.rate_limit import TenantLimiter
from consumer.core.sanitize import name_safely
from consumer.core.tenant_slots import TenantSlots
from consumer.errors import ApiFailure, AuthFailure
from consumer.http_server.connection_guard import ConnectionGuard
from consumer.http_server.health_routes import ReadinessCheck, add_probe_routes
from consumer.http_server.request_metrics import measured
from consumer.http_server.server_spans import server_spans

__all__ = ["GUARD", "LINGER_S", "make_app", "make_operator_app"]

GUARD = web.AppKey("connection_guard", ConnectionGuard)
LINGER_S = 2.0


def make_app(
    handlers: Handlers,
    *,
    authenticator: Authenticator,
    limiter: TenantLimiter,
    guard: ConnectionGuard,
    tracer: Tracer,
    view_ready: Callable[[], bool],
    openapi: dict[str, Any],
    webhooks: WebhookRoutes,
) -> web.Application:
    api = handlers.api
    streams = EventStreams(
        handlers,
        authenticator,
        keepalive_s=api.sse_keepalive_s,
        idle_s=api.stream_idle_s,
        max_per_tenant=api.max_streams_per_tenant,
    )
    links = LinkIssuer(handlers, authenticator)
    calls = TenantSlots(api.max_tenant_connections)

    async def close_streams(_: web.Application) -> None:
        streams.close()

    app = web.Application(
        client_max_size=handlers.api.max_body_bytes,
        middlewares=[
            server_spans(tracer),
            trace_response,
            measured(handlers.metrics.http),
            error_middleware,
            guard.middleware,
            _gate(
                authenticator,
                limiter,
                handlers.metrics,
                view_ready,
                _query_parameters(openapi),
                links=links,
                calls=calls,
            ),
        ],
    )
    app[GUARD] = guard
    app.on_shutdown.append(close_streams)
    app.router.add_post("/v1/videos", Submissions(handlers).submit, expect_handler=defer_continue)
    app.router.add_get("/v1/videos", handlers.list_jobs, allow_head=False)
    app.router.add_get("/v1/videos/{id}", handlers.status, allow_head=False)
    app.router.add_delete("/v1/videos/{id}", handlers.delete)
    app.router.add_post("/v1/videos/{id}/cancel", handlers.cancel)
    app.router.add_get("/v1/videos/{id}/content", handlers.content, allow_head=False)
    app.router.add_post("/v1/videos/{id}/links", links.issue)
    app.router.add_get("/v1/videos/{id}/events", streams.stream, allow_head=False)
    app.router.add_get("/v1/queue", handlers.queue, allow_head=False)
    models = ModelRoutes(handlers.models)
    app.router.add_get("/v1/models", models.list_models, allow_head=False)
    app.router.add_get("/v1/models/{model}", models.model, allow_head=False)
    openapi_text = json.dumps(openapi)

    async def openapi_view(_: web.Request) -> web.Response:
        return web.json_response(text=openapi_text)

    app.router.add_get("/openapi.json", openapi_view, allow_head=False)
    webhooks.add_routes(app)
    Console(handlers).add_routes(app)
    return app


def make_operator_app(
    *, guard: ConnectionGuard, checks: Mapping[str, ReadinessCheck], registry: CollectorRegistry, cache_s: float
) -> web.Application:
    """`/healthz`, `/readyz` (its checks' answers kept for `cache_s`) and `/metrics`, for the operator's port: no
    credential, so nothing there may cost more than a local read."""
    app = web.Application(middlewares=[guard.middleware])
    app[GUARD] = guard
    add_probe_routes(app, checks=checks, registry=registry, cache_s=cache_s)
    return app


def _query_parameters(openapi: Mapping[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(method, route) -> the query parameters the document declares: the only ones accepted."""
    return {
        (method.upper(), path): frozenset(p["name"] for p in operation.get("parameters", ()) if p["in"] == "query")
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
    }


def _gate(
    authenticator: Authenticator,
    limiter: TenantLimiter,
    metrics: ApiMetrics,
    view_ready: Callable[[], bool],
    query_parameters: Mapping[tuple[str, str], frozenset[str]],
    *,
    links: LinkIssuer,
    calls: TenantSlots,
) -> Middleware:
    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/") or request.match_info.http_exception is not None:
            return await handler(request)  # not the API's, or an unknown route or method: 404 / 405
        if not view_ready():
            raise ApiFailure(503, "starting", "the API is catching up with the topics", headers={"Retry-After": "1"})
        try:
            caller = await links.caller(request) or await authenticator.authenticate(request.headers)
        except AuthFailure as exc:
            metrics.auth_failures.labels(reason=exc.reason).inc()
            raise
        request[CALLER] = caller
        trace.get_current_span().set_attribute("vidgen.tenant_id", caller.tenant_id)
        wait_s = limiter.try_take(caller.tenant_id)
        if wait_s > 0:
            metrics.rate_limited.inc()
            retry_after = str(max(1, math.ceil(wait_s)))
            raise ApiFailure(
                429, "rate_limited", "too many calls for this tenant; slow down", headers={"Retry-After": retry_after}
            )
        resource = request.match_info.route.resource
        allowed = query_parameters.get((request.method, resource.canonical if resource else ""), frozenset())
        for position, name in enumerate(request.query, start=1):
            if name not in allowed:
                field = name_safely(name, kind="query parameter", position=position)
                raise ApiFailure(422, "unknown_parameter", "this endpoint takes no such query parameter", field=field)
        if not calls.try_take(caller.tenant_id):
            metrics.concurrency_limited.labels(reason="too_many_connections").inc()
            raise ApiFailure(
                429,
                "too_many_connections",
                f"this tenant has {calls.limit} calls in progress, its share of the API's connections; wait for one",
                headers={"Retry-After": "1"},
            )
        try:
            return await handler(request)
        finally:
            calls.give_back(caller.tenant_id)

    return gate
