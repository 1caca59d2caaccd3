"""`GET /v1/videos/{id}/events`: the job as server-sent events.

One `event: status` per change, `id:` the job's version and `data:` the job object, ending after the terminal one.
A client that reconnects with `Last-Event-ID` gets only what changed since, and `204` once it has seen the end (which
is what stops a browser's EventSource from reconnecting). Versions are counted by each replica's own view: after
switching replicas a client may see a change twice. Between changes the stream waits on the
view's notification (no polling) and sends a comment line every `VIDGEN_API_SSE_KEEPALIVE_S` so proxies keep it.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from consumer.api.routes.job_body import render_job
from consumer.api.routes.videos import CALLER, Handlers
from consumer.api.view.job_state import JobState
from consumer.errors import ApiFailure

__all__ = ["EventStreams", "format_event"]

_KEEPALIVE = b": keep-alive\n\n"


def format_event(version: int, job_json: str) -> bytes:
    """One SSE message; the job JSON is on one line, so one `data:` field carries it."""
    return f"event: status\nid: {version}\ndata: {job_json}\n\n".encode()


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0


class EventStreams:
    def __init__(self, handlers: Handlers, *, keepalive_s: float) -> None:
        self._handlers = handlers
        self._keepalive_s = keepalive_s
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Shutting down: every open stream ends (clients reconnect, with Last-Event-ID, to another replica)."""
        self._closing.set()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        handlers = self._handlers
        tenant = request[CALLER].tenant_id
        job_id = request.match_info["id"]
        sent = _last_event_id(request)
        with handlers.listeners.watch(job_id) as changed:
            state = await handlers.store.get(tenant, job_id)
            if state is None:
                raise ApiFailure(404, "not_found", "no such video job")
            if state.terminal and state.version <= sent:
                # The client saw the end already (EventSource reconnects after every close): 204 stops it.
                return web.Response(status=204)
            response = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
            )
            await response.prepare(request)
            handlers.metrics.event_streams.inc()
            try:
                while state is not None and not self._closing.is_set():
                    if state.version > sent:
                        await response.write(await self._message(state))
                        sent = state.version
                    if state.terminal:
                        break
                    if not await self._changed(changed):
                        await response.write(_KEEPALIVE)
                    changed.clear()  # before reading, so a change after the read wakes the next wait
                    state = await handlers.store.get(tenant, job_id)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client left; nothing to answer
            finally:
                handlers.metrics.event_streams.dec()
        return response

    async def _message(self, state: JobState) -> bytes:
        job = await render_job(state, self._handlers.objects, now=self._handlers.clock())
        return format_event(state.version, job.model_dump_json(exclude_none=True))

    async def _changed(self, changed: asyncio.Event) -> bool:
        """Until the job changes (True), the keep-alive interval passes or the server closes (False)."""
        waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self._closing.wait())]
        try:
            await asyncio.wait(waits, timeout=self._keepalive_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait
        return changed.is_set()
