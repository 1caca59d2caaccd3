"""`GET /v1/videos/{id}/events`: the job as server-sent events.

One `event: status` per change, `id:` the job's version and `data:` the job object, ending after the terminal one.
While the job is queued, a change of its `queue_position` (jobs ahead of it started, ended or were cancelled) is
written too, with the same `id:`: the view wakes the streams of the queued jobs of the queue a batch moved
(`Listeners`), and each asks only its own place (one indexed count), so nothing is polled; a stream resumed with
`Last-Event-ID` starts with the queued job's current place.
A client that reconnects with `Last-Event-ID` gets only what changed since, and `204` once it has seen the end (which
is what stops a browser's EventSource from reconnecting). Versions are counted by each replica's own view: after
switching replicas a client may see a change twice. Between changes the stream waits on the
view's notification (no polling) and sends a comment line every `VIDGEN_API_SSE_KEEPALIVE_S` so proxies keep it.

What a stream may hold is bounded: a tenant has at most `VIDGEN_API_MAX_STREAMS_PER_TENANT` open at once (`429
too_many_streams` past it); a stream ends when its job ends, after `VIDGEN_API_STREAM_IDLE_S` without a change (the
client reconnects with `Last-Event-ID`, authenticated and rate-limited again), and within two seconds of its
credential being revoked or expiring (checked each second, `Authenticator.still_valid`), whatever it was waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from aiohttp import web

from consumer.api.auth.authenticator import Authenticator, Caller
from consumer.api.routes.job_body import QueueSpot
from consumer.api.routes.videos import CALLER, Handlers
from consumer.api.view.job_state import JobState
from consumer.api.view.queue_counts import active_key
from consumer.core.tenant_slots import TenantSlots
from consumer.errors import ApiFailure

__all__ = ["EventStreams", "format_event"]

_KEEPALIVE = b": keep-alive\n\n"
_RECHECK_S = 1.0  # how often an open stream asks whether its credential still stands
_RETRY_AFTER_S = "5"


def format_event(version: int, job_json: str) -> bytes:
    """One SSE message; the job JSON is on one line, so one `data:` field carries it."""
    return f"event: status\nid: {version}\ndata: {job_json}\n\n".encode()


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0


@dataclass
class _Stream:
    """One open stream: where it writes, whose it is, what it waits on, and how far it got."""

    response: web.StreamResponse
    caller: Caller
    job_id: str
    changed: asyncio.Event
    sent: int  # the version the client has seen
    last_change: float  # loop time of the last change written (or the start)
    last_write: float = field(init=False)
    spot: QueueSpot | None = None  # the queued job's place as last written (None: none written on this stream)

    def __post_init__(self) -> None:
        self.last_write = self.last_change


class EventStreams:
    def __init__(
        self,
        handlers: Handlers,
        authenticator: Authenticator,
        *,
        keepalive_s: float,
        idle_s: float,
        max_per_tenant: int,
    ) -> None:
        self._handlers = handlers
        self._authenticator = authenticator
        self._keepalive_s = keepalive_s
        self._idle_s = idle_s
        self._slots = TenantSlots(max_per_tenant)
        self._closing = False
        self._waiting: set[asyncio.Event] = set()

    def close(self) -> None:
        """Shutting down: every open stream ends (clients reconnect, with Last-Event-ID, to another replica)."""
        self._closing = True
        for changed in self._waiting:
            changed.set()

    async def stream(self, request: web.Request) -> web.StreamResponse:
        caller = request[CALLER]
        if not self._slots.try_take(caller.tenant_id):
            self._handlers.metrics.concurrency_limited.labels(reason="too_many_streams").inc()
            raise ApiFailure(
                429,
                "too_many_streams",
                f"this tenant has {self._slots.limit} event streams open, the most it may; close one first",
                headers={"Retry-After": _RETRY_AFTER_S},
            )
        try:
            return await self._serve(request, caller)
        finally:
            self._slots.give_back(caller.tenant_id)

    async def _serve(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        handlers = self._handlers
        job_id = request.match_info["id"]
        sent = _last_event_id(request)
        with handlers.listeners.watch(job_id) as changed:
            state = await handlers.store.get(caller.tenant_id, job_id)
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
            self._waiting.add(changed)
            stream = _Stream(response, caller, job_id, changed, sent, last_change=asyncio.get_running_loop().time())
            ended = "client_left"
            try:
                ended = await self._follow(stream, state)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client left; nothing to answer
            finally:
                self._waiting.discard(changed)
                handlers.metrics.event_streams.dec()
                handlers.metrics.stream_ends.labels(reason=ended).inc()
        return response

    async def _follow(self, stream: _Stream, state: JobState | None) -> str:
        """Writes each change until the stream ends; returns why it ended. A queued job's message is written again
        (with the same `id:`) when its place in the queue moved, though the job itself did not change."""
        handlers = self._handlers
        while state is not None:
            if not await self._authenticator.still_valid(stream.caller):
                return "credential_revoked"
            handlers.listeners.follow_queue(stream.changed, _queue_of(state))
            spot = await handlers.queue_spot(state)
            moved = spot is not None and spot != stream.spot and state.version >= stream.sent
            if state.version > stream.sent or moved:
                await stream.response.write(await self._message(state, spot))
                stream.sent, stream.spot = max(stream.sent, state.version), spot
                stream.last_change = stream.last_write = asyncio.get_running_loop().time()
            if state.terminal:
                return "job_ended"
            ended = await self._until_changed(stream)
            if ended is not None:
                return ended
            stream.changed.clear()  # before reading, so a change after the read wakes the next wait
            state = await handlers.store.get(stream.caller.tenant_id, stream.job_id)
        return "job_gone"

    async def _until_changed(self, stream: _Stream) -> str | None:
        """Until the job changes (None), with a keep-alive comment every `keepalive_s`; or why the stream ends
        first: the server closes, the credential no longer stands, or the job stayed unchanged for `idle_s`."""
        loop = asyncio.get_running_loop()
        while not stream.changed.is_set() and not self._closing:
            if not await self._authenticator.still_valid(stream.caller):
                return "credential_revoked"
            now = loop.time()
            if now - stream.last_change >= self._idle_s:
                return "idle"
            if now - stream.last_write >= self._keepalive_s:
                await stream.response.write(_KEEPALIVE)
                stream.last_write = now
            wake_in = min(
                _RECHECK_S, stream.last_change + self._idle_s - now, stream.last_write + self._keepalive_s - now
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wake_in):
                    await stream.changed.wait()
        return "shutdown" if self._closing else None

    async def _message(self, state: JobState, spot: QueueSpot | None) -> bytes:
        job = await self._handlers.answers.render(state, now=self._handlers.clock(), spot=spot)
        return format_event(state.version, job.model_dump_json(exclude_none=True))


def _queue_of(state: JobState) -> str | None:
    """The queue a queued job waits in (its pool and lane); None once it is not queued."""
    return active_key("queued", state.degraded, state.lane) if state.status == "queued" else None
