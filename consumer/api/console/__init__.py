"""The web console: plain HTML, CSS and ES modules in `static/` (no build step, nothing from a CDN), served by the job
API at `/` and `/console/`, a client of the `/v1` API like any other. `serving` adds its routes and the headers
every answer of the API carries (the console's Content-Security-Policy among them)."""

from consumer.api.console.serving import Console, trace_response

__all__ = ["Console", "trace_response"]
