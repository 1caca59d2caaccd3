"""The TCP site an aiohttp server listens on through a `ConnectionGuard`: `web.TCPSite` with the guard's limits, and
a warning at start-up when the process's file-descriptor limit leaves too little room for them."""

from __future__ import annotations

import asyncio
import logging
import resource

from aiohttp import web

from consumer.http_server.connection_guard import ConnectionGuard

__all__ = ["GuardedSite"]

log = logging.getLogger(__name__)

# Descriptors a process needs besides its HTTP connections (listening socket, event loop, clients, logs).
_DESCRIPTOR_HEADROOM = 64


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
