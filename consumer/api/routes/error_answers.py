"""HTTP errors of the API: each one a `VidgenError` with a status, answered in OpenAI's shape, `{"error": {"message",
"type", "param", "code", "field"}}` (`param` and `field` both name the field at fault), so OpenAI's SDKs raise their
own error classes with these fields. `x-should-retry` tells those SDKs whether retrying can help (429, 503 and 408
can). Messages are written here, never copied from what the client sent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from consumer.errors import ApiFailure
from schemas.job_api import ApiError, ApiErrorBody

__all__ = ["error_middleware", "error_response"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_CODES = {
    400: "bad_request",
    401: "invalid_token",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_field",
    429: "rate_limited",
    503: "unavailable",
}


_RETRIABLE = frozenset({408, 429, 503})


def error_response(
    status: int, code: str, message: str, *, field: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    error = ApiError(message=message, type=_error_type(status), param=field, code=code, field=field)
    retry = {"x-should-retry": "true" if status in _RETRIABLE else "false"}
    return web.json_response(
        ApiErrorBody(error=error).model_dump(), status=status, headers={**(headers or {}), **retry}
    )


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: every failure, ours or aiohttp's (404 route, 405, 413 body), as the one error shape."""
    try:
        return await handler(request)
    except ApiFailure as exc:
        return error_response(exc.status, exc.code, exc.message, field=exc.field, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects are answers, not errors
        code = _STATUS_CODES.get(exc.status, "error")
        headers = {name: value for name, value in exc.headers.items() if name in ("Allow", "Retry-After")}
        return error_response(exc.status, code, exc.reason, headers=headers)
