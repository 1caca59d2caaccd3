"""Serving the console, and the security headers of every answer.

- `GET /` is the page, `GET /console/...` its stylesheet and modules, `GET /console/config.json` the start-image limits
  the API applies (so the page checks a photo before uploading it; the request fields' rules it reads from
  `/openapi.json`) and the form's starting values where the API suggests some (`VIDGEN_API_CONSOLE_DEFAULTS`). No
  credential: nothing here is secret, and every call the page makes goes to `/v1` with the bearer header.
- Every answer gets `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and `X-Frame-Options: DENY`.
  The console's own answers get a strict Content-Security-Policy: scripts, styles and calls from this origin only
  (no inline script or style), images and media also from the object store's origin (where the content redirect
  leads) and blob:/data: images (the photo preview); no frames around it, no `<base>`, forms post only here. Every
  other answer gets `default-src 'none'; frame-ancestors 'none'`: an API answer is never a document.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import trace

from consumer.api.routes.videos import Handlers
from consumer.images.decoding import ALLOWED_FORMATS

__all__ = ["ASSETS_PREFIX", "STATIC", "Console", "trace_response"]

STATIC = Path(__file__).parent / "static"
ASSETS_PREFIX = "/console/"
# The types we mean, not the system's mime database's guesses (which vary: application/javascript, text/plain).
_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}  # all text: served as UTF-8
_API_POLICY = "default-src 'none'; frame-ancestors 'none'"
_EVERY_ANSWER = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _policy_for(media_origin: str) -> str:
    """The console's Content-Security-Policy; `media_origin` is where presigned object URLs point."""
    media = f"'self' {media_origin}".strip()
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {media} blob: data:",
            f"media-src {media}",
            "connect-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def _assets() -> dict[str, tuple[Path, str]]:
    """What `/console/<name>` serves: the files under `static/` with a known type, listed once at start-up (a path a
    client makes up is looked up here, never joined onto the folder)."""
    return {
        path.relative_to(STATIC).as_posix(): (path, _TYPES[path.suffix])
        for path in sorted(STATIC.rglob("*"))
        if path.is_file() and path.suffix in _TYPES
    }


class Console:
    def __init__(self, handlers: Handlers) -> None:
        self._handlers = handlers
        self._assets = _assets()
        self._policy: str | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.page, allow_head=False)
        app.router.add_get(f"{ASSETS_PREFIX}config.json", self.config, allow_head=False)
        app.router.add_get(ASSETS_PREFIX + "{name:.+}", self.asset, allow_head=False)
        app.on_response_prepare.append(self.secure)

    async def page(self, _: web.Request) -> web.FileResponse:
        return self._file("index.html")

    async def asset(self, request: web.Request) -> web.FileResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.FileResponse:
        found = self._assets.get(name)
        if found is None:
            raise web.HTTPNotFound()
        path, content_type = found
        return web.FileResponse(path, headers={"Content-Type": f"{content_type}; charset=utf-8"})

    async def config(self, _: web.Request) -> web.Response:
        settings = self._handlers.settings
        image = {
            "max_bytes": settings.image_max_bytes,
            "max_pixels": settings.image_max_pixels,
            "types": list(ALLOWED_FORMATS),
        }
        return web.json_response({"image": image, "form": self._handlers.api.console_defaults})

    async def secure(self, request: web.Request, response: web.StreamResponse) -> None:
        """`on_response_prepare`: runs for every answer, event streams and errors included."""
        for name, value in _EVERY_ANSWER.items():
            response.headers.setdefault(name, value)
        if request.path == "/" or request.path.startswith(ASSETS_PREFIX):
            response.headers["Content-Security-Policy"] = await self._console_policy()
            response.headers.setdefault("Cache-Control", "no-cache")  # revalidate (ETag): a deploy shows at once
        else:
            response.headers.setdefault("Content-Security-Policy", _API_POLICY)

    async def _console_policy(self) -> str:
        if self._policy is None:
            # Presigning is a local signature: its URL says which origin the content redirect leads to.
            self._policy = _policy_for(_origin(await self._handlers.objects.presign("console-origin")))
        return self._policy


@web.middleware
async def trace_response(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Install inside the SERVER span: the answer names its trace (W3C `traceresponse`), so a client can quote it
    (the console shows it beside the jobs it submitted; the worker's spans continue that trace)."""
    response = await handler(request)
    context = trace.get_current_span().get_span_context()
    if context.is_valid and not response.prepared:
        response.headers["traceresponse"] = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
        )
    return response
