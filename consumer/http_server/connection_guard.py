"""Slow-client protection for aiohttp servers: a bound on open connections, a deadline for each request's headers
and one for its body.

aiohttp has no header-read timeout of its own: until a request's headers are complete, the only thing that ever
closes a connection is its keep-alive timer (3630 s by default), and a handler awaiting `request.read()` waits as
long as the client keeps the connection open. So a client that announces `Content-Length: 60000` and sends
nothing holds a connection, a file descriptor and a task indefinitely, and a few hundred clients dripping a header
byte now and then exhaust the process's file descriptors, after which nothing is accepted at all.

The guard, for any `web.Application`:

- **Header deadline** (`header_timeout_s`): from the moment a connection is accepted, and again from the moment a
  response is handed back on a keep-alive connection, the client has this long to complete the next request's
  headers, however slowly it drips them; then the connection is closed.
- **Body deadline** (`body_timeout_s`): once the headers are in, the whole body must arrive within this long. The
  middleware does not read the body: whoever needs it reads it, streaming, after the request was judged on its
  headers (authentication, rate limits), so a request refused on its headers costs no body bytes. Past the
  deadline the reader gets `BodyTimeout`, the client gets `408` and the connection is closed.
- **Connection bound** (`max_connections`): at the bound, a new connection takes the place of the one that has
  waited longest for its client (headers or body still arriving), which is closed; connections whose request is
  complete and being handled are never taken. Only when every connection is being handled is the newcomer refused
  at once with `503` and closed. A real client sends its request as soon as it connects, so it is the newest waiter and
  the last to be evicted; slowloris clients, however many, evict each other.

Keep `max_connections` well under the process's file-descriptor limit (RLIMIT_NOFILE): the guard warns at
start-up when it is not. Responses are expected to be small (the header deadline of the next request starts when
the handler returns). A flood of new connections faster than real clients can send a request is not solved here:
that is a job for a rate limit in front (load balancer, firewall).

Use it in place of `web.TCPSite`:

    guard = ConnectionGuard(HttpLimits(header_timeout_s=10, body_timeout_s=10, max_connections=256))
    app = web.Application(middlewares=[..., guard.middleware, ...])  # outside every middleware that reads a body
    runner = web.AppRunner(app)
    await runner.setup()
    site = GuardedSite(runner, host, port, guard=guard)
    await site.start()
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import cast

from aiohttp import StreamReader, web

from consumer.errors import BodyTimeout

__all__ = ["ConnectionGuard", "GuardedSite", "HttpLimits"]

log = logging.getLogger(__name__)

# Descriptors a process needs besides its HTTP connections (listening socket, event loop, clients, logs).
_DESCRIPTOR_HEADROOM = 64
_BUSY_TEXT = b"too many connections, try again\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"\r\n%s"
) % (len(_BUSY_TEXT), _BUSY_TEXT)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class HttpLimits:
    """How long a client may take to send a request, and how many connections may be open at once."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    max_connections: int = 256

    def __post_init__(self) -> None:
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("header_timeout_s and body_timeout_s must be > 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol inside, the guard's bookkeeping around it."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self._guard = guard
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)  # create_server hands out stream transports
        self.transport = stream
        if self._guard.admit(self, stream):
            self._inner.connection_made(stream)

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        if self.admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self._guard.forget(self)
            self._inner.connection_lost(exc)


class ConnectionGuard:
    """Connection bookkeeping shared by `GuardedSite` (accepting, header deadlines, the bound) and `middleware`
    (body deadline). The middleware alone, on a server without the site, still enforces the body deadline."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        # Connections waiting for their client (headers or body), the one waiting longest first.
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()
        self._counts: Counter[str] = Counter()
        self._saturated = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def waiting_connections(self) -> int:
        """Open connections waiting for their client (headers or body); the rest are being handled."""
        return len(self._waiting)

    @property
    def counts(self) -> Mapping[str, int]:
        """Events so far: accepted, refused, evicted, header_timeout, body_timeout."""
        return dict(self._counts)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """What `loop.create_server` needs: aiohttp's protocol for each connection, wrapped by the guard."""
        return lambda: _Connection(self, server())

    def admit(self, connection: _Connection, transport: asyncio.Transport) -> bool:
        """Called for each accepted connection: take a free place, evict the longest waiter, or refuse."""
        if len(self._open) >= self.limits.max_connections:
            self._note_saturation()
            if not self._waiting:
                self._counts["refused"] += 1
                transport.write(_BUSY)
                transport.close()
                return False
            self._counts["evicted"] += 1
            self._close(next(iter(self._waiting)))
        self._counts["accepted"] += 1
        connection.admitted = True
        self._open[transport] = connection
        self._await_headers(connection)
        return True

    def forget(self, connection: _Connection) -> None:
        """The connection is gone; idempotent (an evicted connection is forgotten before asyncio reports it lost)."""
        if connection.deadline is not None:
            connection.deadline.cancel()
            connection.deadline = None
        self._waiting.pop(connection, None)
        if connection.transport is not None:
            self._open.pop(connection.transport, None)
        if self._saturated and len(self._open) < self.limits.max_connections // 2:
            self._saturated = False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Starts the body deadline; the connection counts as waiting for its client until the body is in, then as
        busy. The body is left to whoever reads it."""
        transport = request.transport
        connection = self._open.get(transport) if transport is not None else None
        deadline = self._receive(connection, request.content)
        try:
            return await handler(request)
        except BodyTimeout:
            return await self._request_timeout(request)
        except ConnectionError:
            if transport is not None and not transport.is_closing():
                raise  # not this client's connection: someone else's failure, for the error handling outside
            # The client went away, or was evicted, mid-body: nobody is left to answer, so nothing is logged.
            return web.Response(status=400)
        finally:
            if deadline is not None:
                deadline.cancel()
            if connection is not None and connection.transport in self._open:
                self._await_headers(connection)  # the next request on this keep-alive connection

    def _receive(self, connection: _Connection | None, body: StreamReader) -> asyncio.TimerHandle | None:
        """The body's deadline (None when the body is in already); the connection waits for its client while the
        body arrives and is busy from when it is complete."""
        if body.is_eof():
            if connection is not None:
                self._busy(connection)
            return None
        if connection is not None:
            self._wait(connection, deadline=None)  # the body deadline is the one that counts now
        deadline = asyncio.get_running_loop().call_later(self.limits.body_timeout_s, self._body_late, body)

        def arrived() -> None:
            if deadline.cancelled():
                return  # the request is over: the connection's state is no longer this body's to change
            deadline.cancel()
            if connection is not None:
                self._busy(connection)

        body.on_eof(arrived)
        return deadline

    async def _request_timeout(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=408, text=f"request body not received within {self.limits.body_timeout_s:g} s\n")
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        # The rest of the body may still come: close now rather than let aiohttp linger reading it.
        request.protocol.force_close()
        return response

    def _await_headers(self, connection: _Connection) -> None:
        loop = asyncio.get_running_loop()
        self._wait(connection, deadline=loop.call_later(self.limits.header_timeout_s, self._headers_late, connection))

    def _wait(self, connection: _Connection, *, deadline: asyncio.TimerHandle | None) -> None:
        """The connection now waits for its client: last in line for eviction, with this deadline (if any)."""
        if connection.deadline is not None:
            connection.deadline.cancel()
        connection.deadline = deadline
        self._waiting.pop(connection, None)
        self._waiting[connection] = None

    def _busy(self, connection: _Connection) -> None:
        """Its request is complete and being handled: no deadline of ours, never evicted."""
        if connection.deadline is not None:
            connection.deadline.cancel()
            connection.deadline = None
        self._waiting.pop(connection, None)

    def _body_late(self, body: StreamReader) -> None:
        self._counts["body_timeout"] += 1
        late = BodyTimeout(f"request body not received within {self.limits.body_timeout_s:g} s", code="request_timeout")
        body.set_exception(late)

    def _headers_late(self, connection: _Connection) -> None:
        connection.deadline = None
        self._counts["header_timeout"] += 1
        log.debug("closing a connection whose request headers did not arrive in time")
        self._close(connection)

    def _close(self, connection: _Connection) -> None:
        self.forget(connection)
        if connection.transport is not None:
            connection.transport.abort()

    def _note_saturation(self) -> None:
        if not self._saturated:
            self._saturated = True
            log.warning(
                "HTTP connection bound reached (%d open): evicting the slowest clients or refusing new ones",
                self.limits.max_connections,
            )


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`: `web.TCPSite` with the guard's limits."""

    __slots__ = ("_bound_port", "_guard", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard, backlog: int = 128
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._bound_port: int | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one the OS picked when 0 was asked for)."""
        return self._bound_port if self._bound_port is not None else self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting the site")
        _warn_if_descriptors_are_short(self._guard.limits.max_connections)
        loop = asyncio.get_running_loop()
        listening = await loop.create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )
        self._server = listening
        self._bound_port = listening.sockets[0].getsockname()[1]


def _warn_if_descriptors_are_short(max_connections: int) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and max_connections + _DESCRIPTOR_HEADROOM > soft:
        log.warning(
            "max_connections %d leaves fewer than %d of the process's %d file descriptors for anything else",
            max_connections,
            _DESCRIPTOR_HEADROOM,
            soft,
        )
