"""fetch_https against real HTTPS servers on loopback (trustme CA), and every refusal before any connect.

Only 127.0.0.1 is ever connected to. Refusals of other addresses must happen before a socket opens; the
sandbox would fail any attempt loudly, which is part of what these tests prove.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

import pytest
import trustme
from aiohttp import web

from consumer.errors import ImageFetchError, ImageTooLarge, ImageUrlForbidden, VidgenError
from consumer.images.https_download import FetchPolicy, fetch_https
from consumer.images.url_vetting import Resolve

BODY = b"\x89PNG\r\n\x1a\n" + b"pretend-image-bytes" * 50
TEST_HOST = "images.example.test"  # a name only our injected resolvers know
LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


@dataclass
class Server:
    base: str
    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)  # (Host header, peer address) per request


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls() -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", TEST_HOST)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(server, client)


def _app(server: Server) -> web.Application:
    async def record(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        server.seen.append((request.host, request.remote or ""))
        return await handler(request)

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="image/png")

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]))

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.match_info["kib"])):
            await response.write(b"x" * 1024)
        await response.write_eof()
        return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(200):  # ~20 s if nobody stops it; each byte comes well inside the read timeout
            await response.write(b"x")
            await asyncio.sleep(0.1)
        return response

    async def stall(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)  # headers out, then silence
        await asyncio.sleep(30)
        return response

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def chain(request: web.Request) -> web.Response:
        hops = int(request.match_info["n"])
        if hops == 0:
            return await image(request)
        raise web.HTTPFound(f"/chain/{hops - 1}")  # relative: resolved against the current URL

    app = web.Application(middlewares=[web.middleware(record)])
    app.router.add_get("/image.png", image)
    app.router.add_get("/sized/{n}", sized)
    app.router.add_get("/chunked/{kib}", chunked)
    app.router.add_get("/drip", drip)
    app.router.add_get("/stall", stall)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/chain/{n}", chain)
    return app


@pytest.fixture(scope="module")
async def server(tls: Tls) -> AsyncIterator[Server]:
    state = Server(base="", port=0)
    runner = web.AppRunner(_app(state), handler_cancellation=True)  # a dropped client stops its handler
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server)
    await site.start()
    state.port = runner.addresses[0][1]
    state.base = f"https://127.0.0.1:{state.port}"
    yield state
    await runner.cleanup()


@pytest.fixture
def policy(tls: Tls) -> FetchPolicy:
    """The happy-path policy: loopback trusted, the test CA trusted, tight timeouts."""
    return FetchPolicy(
        max_bytes=64 * 1024,
        connect_timeout_s=2.0,
        read_timeout_s=1.0,
        trusted_networks=LOOPBACK,
        ssl_context=tls.client,
    )


def _resolver(*answers: Sequence[str]) -> tuple[list[str], Resolve]:
    """An injected resolver answering `answers[i]` on call i (the last one repeats); records the hosts."""
    calls: list[str] = []

    async def resolve(host: str, _port: int) -> Sequence[str]:
        calls.append(host)
        return answers[min(len(calls), len(answers)) - 1]

    return calls, resolve


async def test_fetches_from_a_trusted_server(server: Server, policy: FetchPolicy) -> None:
    assert await fetch_https(f"{server.base}/image.png", policy) == BODY


async def test_follows_relative_redirects_up_to_the_limit(server: Server, policy: FetchPolicy) -> None:
    assert await fetch_https(f"{server.base}/chain/3", policy) == BODY

    with pytest.raises(ImageUrlForbidden, match="redirected more than 3 times"):
        await fetch_https(f"{server.base}/chain/4", policy)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://127.0.0.1/a.png", "scheme 'http'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("ftp://127.0.0.1/a.png", "scheme 'ftp'"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme 'gopher'"),
        ("data:image/png;base64,iVBORw0KGgo=", "scheme 'data'"),
        ("//127.0.0.1/a.png", "scheme '(none)'"),
        ("https://user:pass@127.0.0.1/a.png", "credentials"),
        ("https://user@127.0.0.1/a.png", "credentials"),
        ("https:///a.png", "no host"),
        ("https://127.0.0.1/a.png", "127.0.0.1, a loopback address"),
        ("https://localhost/a.png", "a loopback address"),
        ("https://[::1]/a.png", "::1, a loopback address"),
        ("https://[::ffff:127.0.0.1]/a.png", "(IPv4 127.0.0.1), a loopback address"),
        ("https://[::ffff:a9fe:a9fe]/a.png", "(IPv4 169.254.169.254), a link-local"),
        ("https://[64:ff9b::a00:1]/a.png", "(IPv4 10.0.0.1), a private address"),
        ("https://[2002:7f00:1::]/a.png", "(IPv4 127.0.0.1), a loopback address"),
        ("https://2130706433/a.png", "127.0.0.1, a loopback address"),
        ("https://0177.0.0.1/a.png", "127.0.0.1, a loopback address"),
        ("https://0x7f.1/a.png", "127.0.0.1, a loopback address"),
        ("https://127.1/a.png", "127.0.0.1, a loopback address"),
        ("https://127.0.0.1./a.png", "127.0.0.1, a loopback address"),
        ("https://0/a.png", "0.0.0.0, an unspecified address"),
        ("https://10.0.0.1/a.png", "10.0.0.1, a private address"),
        ("https://192.168.1.1/a.png", "192.168.1.1, a private address"),
        ("https://172.16.0.1/a.png", "172.16.0.1, a private address"),
        ("https://100.64.0.1/a.png", "carrier-grade NAT"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
        ("https://[fe80::1]/a.png", "a link-local address"),
        ("https://[fd00::1]/a.png", "a private address"),
        ("https://224.0.0.1/a.png", "a multicast address"),
        ("https://240.0.0.1/a.png", "240.0.0.1, a "),
        ("https://0x08.8.8.8/a.png", "non-canonical spelling of 8.8.8.8"),  # public, but refused as spelt
        ("https://8.8.8.8./a.png", "non-canonical spelling of 8.8.8.8"),
        ("https://1.2.3.4.5/a.png", "not a valid IPv4 address"),
        ("https://256.1.1.1/a.png", "not a valid IPv4 address"),
        ("https://example.09/a.png", "not a valid IPv4 address"),  # ends in a number: must be an address
        ("https://bad..host/a.png", "not a valid hostname"),
    ],
)
async def test_refuses_before_connecting(url: str, rule: str) -> None:
    policy = FetchPolicy(max_bytes=1024, connect_timeout_s=1.0, read_timeout_s=1.0)

    with pytest.raises(ImageUrlForbidden, match=f"^image_url .*{re.escape(rule)}"):
        await fetch_https(url, policy)


async def test_refusal_carries_a_stable_non_retriable_code() -> None:
    policy = FetchPolicy(max_bytes=1024, connect_timeout_s=1.0, read_timeout_s=1.0)

    with pytest.raises(ImageUrlForbidden) as caught:
        await fetch_https("https://169.254.169.254/latest/meta-data", policy)
    error = caught.value
    assert (error.code, error.retriable, error.rejects) == ("image_url_forbidden", False, True)


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254, a link-local address"),
        ("http://127.0.0.1/image.png", "scheme 'http'"),
        ("https://[::ffff:10.0.0.1]/x", "(IPv4 10.0.0.1), a private address"),
    ],
)
async def test_each_redirect_is_vetted_again(server: Server, policy: FetchPolicy, target: str, rule: str) -> None:
    with pytest.raises(ImageUrlForbidden, match=re.escape(rule)):
        await fetch_https(f"{server.base}/redirect?to={target}", policy)


async def test_host_allowlist(server: Server, policy: FetchPolicy) -> None:
    calls, resolve = _resolver(["127.0.0.1"])
    allow = replace(policy, host_allowlist=(".example.test",))

    assert await fetch_https(f"https://{TEST_HOST}:{server.port}/image.png", allow, resolver=resolve) == BODY
    for url in ["https://evil.test/a.png", "https://example.test/a.png", f"{server.base}/image.png"]:
        with pytest.raises(ImageUrlForbidden, match="not in the host allowlist"):
            await fetch_https(url, allow, resolver=resolve)
    assert calls == [TEST_HOST]  # refused hosts are not even resolved


async def test_any_private_answer_refuses_the_host() -> None:
    """Rebinding with mixed answers: one public address does not launder a private one."""
    calls, resolve = _resolver(["93.184.216.34", "10.0.0.1"])
    policy = FetchPolicy(max_bytes=1024, connect_timeout_s=1.0, read_timeout_s=1.0)

    with pytest.raises(ImageUrlForbidden, match=f"host {TEST_HOST} resolves to 10.0.0.1, a private address"):
        await fetch_https(f"https://{TEST_HOST}/a.png", policy, resolver=resolve)
    assert calls == [TEST_HOST]


async def test_connection_is_pinned_to_the_vetted_address(server: Server, policy: FetchPolicy) -> None:
    """Rebinding over time: the resolver turns private after our check. Were aiohttp to ask it again, it
    would dial 10.0.0.1 (which the sandbox forbids); instead it only ever sees the address we vetted."""
    calls, resolve = _resolver(["127.0.0.1"], ["10.0.0.1"])
    server.seen.clear()

    body = await fetch_https(f"https://{TEST_HOST}:{server.port}/image.png", policy, resolver=resolve)

    assert body == BODY
    assert calls == [TEST_HOST]  # asked once, by the vetting step
    assert server.seen == [(f"{TEST_HOST}:{server.port}", "127.0.0.1")]  # SNI/Host kept, IP pinned


async def test_second_hop_rebinding_is_refused(server: Server, policy: FetchPolicy) -> None:
    """Each hop resolves and vets again: a name that rebinds between hops is caught on the next one."""
    calls, resolve = _resolver(["127.0.0.1"], ["169.254.169.254"])

    with pytest.raises(ImageUrlForbidden, match=r"169\.254\.169\.254, a link-local address"):
        await fetch_https(f"https://{TEST_HOST}:{server.port}/chain/1", policy, resolver=resolve)
    assert len(calls) == 2


async def test_declared_length_over_the_limit(server: Server, policy: FetchPolicy) -> None:
    with pytest.raises(ImageTooLarge, match="Content-Length") as caught:
        await fetch_https(f"{server.base}/sized/{policy.max_bytes + 1}", policy)
    assert caught.value.code == "image_too_large"
    assert await fetch_https(f"{server.base}/sized/{policy.max_bytes}", policy) == b"x" * policy.max_bytes


async def test_chunked_body_over_the_limit_is_cut(server: Server, policy: FetchPolicy) -> None:
    with pytest.raises(ImageTooLarge, match="body is over 65536 bytes"):
        await fetch_https(f"{server.base}/chunked/65", policy)
    assert len(await fetch_https(f"{server.base}/chunked/64", policy)) == 64 * 1024


async def test_slow_drip_body_hits_the_total_deadline(server: Server, policy: FetchPolicy) -> None:
    started = time.monotonic()

    with pytest.raises(ImageFetchError, match=r"did not finish within 0\.8 s") as caught:
        await fetch_https(f"{server.base}/drip", replace(policy, total_timeout_s=0.8))

    assert time.monotonic() - started < 3
    assert caught.value.retriable


async def test_silent_body_hits_the_read_timeout(server: Server, policy: FetchPolicy) -> None:
    started = time.monotonic()

    with pytest.raises(ImageFetchError, match="timed out") as caught:
        await fetch_https(f"{server.base}/stall", replace(policy, read_timeout_s=0.3))

    assert time.monotonic() - started < 2
    assert caught.value.retriable


@pytest.mark.parametrize("code", [500, 502, 503, 429, 408])
async def test_server_errors_are_retriable(server: Server, policy: FetchPolicy, code: int) -> None:
    with pytest.raises(ImageFetchError, match=f"HTTP {code}") as caught:
        await fetch_https(f"{server.base}/status/{code}", policy)
    assert (caught.value.code, caught.value.retriable) == ("image_fetch_failed", True)


@pytest.mark.parametrize(
    ("code", "error_code"),
    [
        (404, "image_not_found"),
        (410, "image_not_found"),
        (400, "image_url_forbidden"),
        (403, "image_url_forbidden"),
    ],
)
async def test_client_errors_are_not_retried(server: Server, policy: FetchPolicy, code: int, error_code: str) -> None:
    with pytest.raises(VidgenError, match=f"HTTP {code}; not retried") as caught:
        await fetch_https(f"{server.base}/status/{code}", policy)
    error = caught.value
    assert (error.code, error.retriable, error.rejects) == (error_code, False, True)


async def test_untrusted_certificate_fails(server: Server, policy: FetchPolicy) -> None:
    with pytest.raises(ImageFetchError, match="failed"):
        await fetch_https(f"{server.base}/image.png", replace(policy, ssl_context=None))  # system trust


async def test_connection_refused_is_retriable(policy: FetchPolicy) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(ImageFetchError, match="failed") as caught:
        await fetch_https(f"https://127.0.0.1:{port}/a.png", policy)
    assert caught.value.retriable


async def test_unresolvable_host_is_retriable(policy: FetchPolicy) -> None:
    async def fail(host: str, _port: int) -> Sequence[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(ImageFetchError, match="did not resolve"):
        await fetch_https(f"https://{TEST_HOST}/a.png", policy, resolver=fail)
