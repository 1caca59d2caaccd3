"""consumer.http_server.connection_guard on a real aiohttp server on loopback: header and body deadlines, keep-alive,
and what happens at the connection bound (the longest-waiting client is evicted; with every connection busy, 503)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web

from consumer.http_server.connection_guard import ConnectionGuard, HttpLimits
from consumer.http_server.guarded_site import GuardedSite

Opened = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def _serve(
    limits: HttpLimits, release: asyncio.Event | None = None
) -> AsyncIterator[tuple[int, ConnectionGuard]]:
    """`POST /echo` answers the body's length; `GET /hold` waits for `release` before answering."""
    guard = ConnectionGuard(limits)

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    async def hold(_: web.Request) -> web.Response:
        if release is not None:
            await release.wait()
        return web.Response(text="released")

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_post("/echo", echo)
    app.router.add_get("/hold", hold)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, guard=guard)
    await site.start()
    try:
        yield site.port, guard
    finally:
        await runner.cleanup()


async def _open(port: int, data: bytes = b"") -> Opened:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
    return reader, writer


async def _until_closed(opened: Opened, *, timeout_s: float) -> tuple[bytes, float]:
    """What the server sent before closing the connection, and how long that took."""
    reader, writer = opened
    started = time.monotonic()
    received = b""
    try:
        async with asyncio.timeout(timeout_s):
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(4096):
                    received += chunk
    finally:
        writer.close()
    return received, time.monotonic() - started


async def _wait_for(condition: Callable[[], bool], *, timeout_s: float = 5) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - watching the guard's own state
            await asyncio.sleep(0.02)


def test_limits_are_validated() -> None:
    for bad in ({"header_timeout_s": 0}, {"body_timeout_s": -1}, {"max_connections": 0}):
        with pytest.raises(ValueError, match="must be"):
            HttpLimits(**bad)


async def test_headers_must_be_complete_within_the_header_timeout_however_slowly_they_drip() -> None:
    async with _serve(HttpLimits(header_timeout_s=0.5, body_timeout_s=5)) as (port, guard):
        silent = await _open(port)
        dripping = await _open(port, b"GET /hold HTTP/1.1\r\n")

        async def drip() -> None:
            while True:
                dripping[1].write(b"X")
                await asyncio.sleep(0.1)

        dripper = asyncio.create_task(drip())
        try:
            (_, silent_s), (_, dripping_s) = await asyncio.gather(
                _until_closed(silent, timeout_s=5), _until_closed(dripping, timeout_s=5)
            )
        finally:
            dripper.cancel()
        assert silent_s < 0.5 + 1.0 and dripping_s < 0.5 + 1.0
        assert guard.counts["header_timeout"] == 2
        await _wait_for(lambda: guard.open_connections == 0)


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closed() -> None:
    async with _serve(HttpLimits(header_timeout_s=5, body_timeout_s=0.5)) as (port, guard):
        stalled = await _open(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        received, elapsed = await _until_closed(stalled, timeout_s=5)
        assert received.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in received
        assert elapsed < 0.5 + 1.0
        assert guard.counts["body_timeout"] == 1
        # A body that arrives in time is read for the handler.
        async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}/echo", data=b"x" * 50) as ok:
            assert (ok.status, await ok.text()) == (200, "50")


async def test_a_keep_alive_connection_serves_several_requests_then_idles_out() -> None:
    async with _serve(HttpLimits(header_timeout_s=0.5, body_timeout_s=5)) as (port, guard):
        async with aiohttp.ClientSession() as http:
            for size in (1, 2, 3):
                async with http.post(f"http://127.0.0.1:{port}/echo", data=b"x" * size) as response:
                    assert await response.text() == str(size)
                await asyncio.sleep(0.2)  # a pause shorter than the header timeout, between requests
            assert guard.counts["accepted"] == 1  # one connection carried all three
            await _wait_for(lambda: guard.open_connections == 0)  # idle past the header timeout: closed
        assert guard.counts["header_timeout"] == 1


async def test_at_the_bound_the_client_waiting_longest_makes_room() -> None:
    async with _serve(HttpLimits(header_timeout_s=30, body_timeout_s=30, max_connections=2)) as (port, guard):
        silent = await _open(port)
        await _wait_for(lambda: guard.open_connections == 1)
        slow_body = await _open(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        await _wait_for(lambda: guard.open_connections == 2)

        async with aiohttp.ClientSession() as first_http, aiohttp.ClientSession() as second_http:
            async with first_http.post(f"http://127.0.0.1:{port}/echo", data=b"abc") as first:
                assert (first.status, await first.text()) == (200, "3")
            _, silent_s = await _until_closed(silent, timeout_s=5)  # evicted: it had waited longest
            assert silent_s < 1.0
            # Now the stalled body has waited longer than first_http's idle keep-alive connection: it goes next.
            async with second_http.post(f"http://127.0.0.1:{port}/echo", data=b"abcd") as second:
                assert (second.status, await second.text()) == (200, "4")
            received, slow_s = await _until_closed(slow_body, timeout_s=5)
            assert received == b"" and slow_s < 1.0
        assert guard.counts["evicted"] == 2


async def test_at_the_bound_with_every_connection_busy_a_newcomer_is_refused_at_once() -> None:
    release = asyncio.Event()
    limits = HttpLimits(header_timeout_s=30, body_timeout_s=30, max_connections=2)
    async with _serve(limits, release) as (port, guard), aiohttp.ClientSession() as http:

        async def hold() -> str:
            async with http.get(f"http://127.0.0.1:{port}/hold") as response:
                return await response.text()

        held = [asyncio.create_task(hold()) for _ in range(2)]
        # Both requests are in their handler, where they are never evicted.
        await _wait_for(lambda: guard.open_connections == 2 and guard.waiting_connections == 0)
        refused, elapsed = await _until_closed(await _open(port, b"GET /hold HTTP/1.1\r\n\r\n"), timeout_s=5)
        assert refused.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in refused
        head, _, body = refused.partition(b"\r\n\r\n")  # the job API's error shape, as every refusal
        assert b"Content-Type: application/json" in head and int(re.findall(rb"Content-Length: (\d+)", head)[0]) == len(
            body
        )
        assert json.loads(body)["error"]["code"] == "server_busy"
        assert elapsed < 1.0
        release.set()
        assert await asyncio.gather(*held) == ["released", "released"]
        assert guard.counts["refused"] == 1
