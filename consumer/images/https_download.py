"""SSRF-safe HTTPS download of a start image: vet each hop's URL (`consumer.images.url_vetting`), connect only to
the addresses vetted, stream with limits.

Every hop (the first URL and each redirect) is vetted the same way before any socket opens. The TCP connection then
goes to exactly the addresses vetted (a resolver that only knows them: `pinned_session`, which the result notifier's
webhooks use too), so a DNS answer that changes between the check and aiohttp's connect cannot steer it elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from consumer.errors import ImageFetchError, ImageNotFound, ImageTooLarge, ImageUrlForbidden
from consumer.images.url_vetting import IPNetwork, Resolve, UrlRules, Vetted, parse_url, vet_url

__all__ = ["FetchPolicy", "fetch_https", "pinned_session"]

_log = logging.getLogger(__name__)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRIABLE_4XX = frozenset({408, 429})
_GONE = frozenset({404, 410})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """Limits and trust for one download; built from `Settings` by the caller."""

    max_bytes: int  # enforced from Content-Length up front and again while streaming
    connect_timeout_s: float  # DNS and TCP+TLS connect, per hop
    read_timeout_s: float  # per socket read
    max_redirects: int = 3
    host_allowlist: tuple[str, ...] = ()  # empty = any public host; "a.b" exact, ".b" any subdomain of b
    trusted_networks: tuple[IPNetwork, ...] = ()  # ONLY tests/private deployments: exempt from the ban
    ssl_context: ssl.SSLContext | None = None  # None = system trust store, verification on
    total_timeout_s: float | None = None  # whole fetch; None = connect + 3 x read, stops slow-drip bodies

    @property
    def deadline_s(self) -> float:
        if self.total_timeout_s is not None:
            return self.total_timeout_s
        return self.connect_timeout_s + 3 * self.read_timeout_s

    @property
    def rules(self) -> UrlRules:
        return UrlRules(
            resolve_timeout_s=self.connect_timeout_s,
            host_allowlist=self.host_allowlist,
            trusted_networks=self.trusted_networks,
        )


async def fetch_https(url: str, policy: FetchPolicy, *, resolver: Resolve | None = None) -> bytes:
    """Download `url` under `policy` and return the body.

    Raises `ImageUrlForbidden` (scheme, credentials, host, address, redirect count, other 4xx),
    `ImageNotFound` (404, 410), `ImageTooLarge` (over `max_bytes`) or the retriable `ImageFetchError`
    (DNS, connect, TLS, timeouts, 5xx, 408, 429).
    """
    rules = policy.rules
    deadline = policy.deadline_s
    try:
        async with asyncio.timeout(deadline):
            current = parse_url(url, rules)
            for hop in range(policy.max_redirects + 1):
                vetted = await vet_url(current, rules, resolver)
                _log.debug("image fetch hop %d: host %s pinned to %s", hop, current.raw_host, vetted.addresses)
                outcome = await _get(vetted, policy)
                if isinstance(outcome, bytes):
                    return outcome
                current = outcome
    except TimeoutError as exc:
        raise ImageFetchError(f"image_url download did not finish within {deadline:g} s") from exc
    raise ImageUrlForbidden(f"image_url redirected more than {policy.max_redirects} times")


def pinned_session(
    vetted: Vetted, *, timeout: aiohttp.ClientTimeout, ssl_context: ssl.SSLContext | None = None
) -> aiohttp.ClientSession:
    """A session that reaches only `vetted.url`'s host, and only at the vetted addresses (no DNS rebinding).

    One connection per request (force_close), no proxy from the environment (it would bypass the pinning), no
    cookies, no transparent decompression (no zip bombs); `ssl_context` None = the system trust store."""
    connector = aiohttp.TCPConnector(
        resolver=_PinnedResolver(vetted.url.raw_host or "", vetted.addresses),
        use_dns_cache=False,
        ssl=ssl_context or True,
        force_close=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        trust_env=False,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _get(vetted: Vetted, policy: FetchPolicy) -> bytes | URL:
    """One pinned request: the body of a 2xx, or the next URL of a redirect."""
    url = vetted.url
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.connect_timeout_s, sock_read=policy.read_timeout_s)
    headers = {"Accept": "image/*", "Accept-Encoding": "identity"}  # no transparent gunzip: no zip bombs
    try:
        async with (
            pinned_session(vetted, timeout=timeout, ssl_context=policy.ssl_context) as session,
            session.get(url, allow_redirects=False, headers=headers) as response,
        ):
            if response.status in _REDIRECTS:
                return _redirect_target(url, response)
            _check_status(url, response.status)
            return await _read_body(response, policy.max_bytes)
    except TimeoutError as exc:  # aiohttp's connect/read timeouts are TimeoutError subclasses
        raise ImageFetchError(f"image_url host {url.raw_host} timed out: {exc or 'no data'}") from exc
    except aiohttp.ClientResponseError as exc:  # its str() carries the full URL, query tokens included
        raise ImageFetchError(f"image_url download from {url.raw_host} failed: HTTP {exc.status}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise ImageFetchError(f"image_url download from {url.raw_host} failed: {exc!r}") from exc


def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise ImageUrlForbidden(f"image_url answered HTTP {response.status} without a Location")
    try:
        return url.join(URL(location)).with_fragment(None)
    except (ValueError, TypeError) as exc:
        raise ImageUrlForbidden(f"image_url redirected to an invalid URL: {exc}") from exc


def _check_status(url: URL, status: int) -> None:
    if 200 <= status < 300:
        return
    if status >= 500 or status in _RETRIABLE_4XX:
        raise ImageFetchError(f"image_url host {url.raw_host} answered HTTP {status}")
    if status in _GONE:
        raise ImageNotFound(f"image_url host {url.raw_host} answered HTTP {status}; not retried")
    # Any other answer (401, 403, 400, 3xx without a redirect...) is the request's fault: retrying won't help.
    raise ImageUrlForbidden(f"image_url host {url.raw_host} answered HTTP {status}; not retried")


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise ImageTooLarge(f"image_url declares {declared} bytes (Content-Length), over {max_bytes}")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise ImageTooLarge(f"image_url body is over {max_bytes} bytes")
    return bytes(body)


class _PinnedResolver(AbstractResolver):
    """Answers only for the vetted host, only with the vetted addresses: aiohttp connects to nothing else."""

    def __init__(self, host: str, addresses: tuple[str, ...]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"refusing to resolve {host!r}: only {self._host!r} was vetted")
        results: list[ResolveResult] = []
        for address in self._addresses:
            found = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    {"hostname": host, "host": address, "port": port, "family": found, "proto": 0, "flags": 0}
                )
        if not results:
            raise OSError(f"no vetted address of {host!r} in family {family!r}")
        return results

    async def close(self) -> None:
        return None
