"""The SERVER span of every HTTP request, for every server of ours (the product hook, the job API).

It is a root span: callers are outside the trust boundary, so a `traceparent` they send is not continued. Install
it first (outermost), so it sees the answer the client gets, errors turned into responses included.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

__all__ = ["route_of", "server_spans"]

_UNMATCHED = "(unmatched)"


def route_of(request: web.Request) -> str:
    """The route template (`/v1/videos/{id}`), never the path a client typed: low cardinality, nothing echoed."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else _UNMATCHED


def server_spans(tracer: Tracer) -> Middleware:
    @web.middleware
    async def server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        with tracer.start_as_current_span(f"{request.method} {route}", context=Context(), kind=SpanKind.SERVER) as span:
            span.set_attributes({"http.request.method": request.method, "http.route": route, "url.path": request.path})
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                _answered(span, exc.status)
                raise
            _answered(span, response.status)
            return response

    return server_span


def _answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
