"""SSRF-safe HTTPS download of a start image: vet the URL, resolve it ourselves, pin the connection, stream.

Every hop (the first URL and each redirect) is checked the same way before any socket opens:
scheme `https` only, no credentials, optional host allowlist, every resolved address public. The TCP
connection then goes to exactly the addresses we vetted (a resolver that only knows them), so a DNS answer
that changes between our check and aiohttp's connect (rebinding) cannot steer it elsewhere.

Numeric IPv4 hosts are normalised the way browsers and `inet_aton` read them (`2130706433`, `0177.0.0.1`,
`0x7f.1`, `127.1` all mean 127.0.0.1) and judged as that address; a non-canonical spelling of a *public*
address is refused too, since other layers (proxies, TLS, logs) may read it differently.

`vet_url` and `pinned_session` are public so that other outbound callers (the result notifier's webhooks) get
the same rules; `UrlRules` says how their refusals are worded and which errors they raise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from consumer.errors import ImageFetchError, ImageNotFound, ImageTooLarge, ImageUrlForbidden, VidgenError

__all__ = ["FetchPolicy", "IPNetwork", "Resolve", "UrlRules", "Vetted", "fetch_https", "pinned_session", "vet_url"]

_log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]
"""`async (host, port) -> IP address strings`. Default: the system resolver; tests inject their own."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRIABLE_4XX = frozenset({408, 429})
_GONE = frozenset({404, 410})
_CHUNK = 64 * 1024
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_HOSTNAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
_ENDS_IN_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")  # WHATWG: such a host must be an IPv4 address
_IPV4_PART = re.compile(r"0x(?P<hex>[0-9a-f]*)|0(?P<oct>[0-7]+)|(?P<dec>0|[1-9][0-9]*)")


@dataclass(frozen=True)
class UrlRules:
    """What a URL must satisfy before any socket opens, and how a refusal is reported."""

    resolve_timeout_s: float
    host_allowlist: tuple[str, ...] = ()  # empty = any host; "a.b" exact, ".b" any subdomain of b
    internal_hosts: tuple[str, ...] = ()  # named hosts (same syntax) that may resolve to non-public addresses
    trusted_networks: tuple[IPNetwork, ...] = ()  # ONLY tests/private deployments: exempt from the ban
    subject: str = "image_url"  # how refusals name the URL
    forbidden: type[VidgenError] = ImageUrlForbidden  # the URL breaks a rule: not retriable
    unresolved: type[VidgenError] = ImageFetchError  # DNS failed or timed out: retriable


@dataclass(frozen=True)
class Vetted:
    """A URL that passed `vet_url`, with the only addresses a connection to it may use."""

    url: URL
    addresses: tuple[str, ...]


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
            current = _parse(url, rules)
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


def _parse(url: str, rules: UrlRules) -> URL:
    try:
        return URL(url)
    except (ValueError, TypeError) as exc:
        raise rules.forbidden(f"{rules.subject} is not a valid URL: {exc}") from exc


async def vet_url(url: str | URL, rules: UrlRules, resolver: Resolve | None = None) -> Vetted:
    """Apply every rule to one hop, resolving the host with `resolver` (default: the system resolver).

    Raises `rules.forbidden` when the URL breaks a rule and `rules.unresolved` when DNS fails. A connection
    must then use only the returned addresses: `pinned_session`."""
    url = _parse(url, rules) if isinstance(url, str) else url
    forbidden, subject = rules.forbidden, rules.subject
    if url.scheme != "https":
        raise forbidden(f"{subject} scheme {url.scheme or '(none)'!r} is not allowed; only https")
    if url.raw_user is not None or url.raw_password is not None:
        raise forbidden(f"{subject} must not carry credentials (user:pass@host)")
    host = (url.raw_host or "").lower()
    if not host:
        raise forbidden(f"{subject} has no host")
    if rules.host_allowlist and not _allowed(host.rstrip("."), rules.host_allowlist):
        raise forbidden(f"{subject} host {host} is not in the host allowlist")
    internal = _allowed(host.rstrip("."), rules.internal_hosts)  # named explicitly: any address goes

    literal = _ip_literal(host, rules)
    if literal is not None:
        if not internal:
            _judge(host, literal, rules)
        if ":" not in host and host != str(literal):
            raise forbidden(f"{subject} host {host} is a non-canonical spelling of {literal}")
        return Vetted(url, (str(literal),))

    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        raise forbidden(f"{subject} host {host!r} is not a valid hostname")
    try:
        async with asyncio.timeout(rules.resolve_timeout_s):
            answers = await (resolver or _system_resolve)(host, url.port or 443)
        addresses = [ipaddress.ip_address(answer) for answer in answers]
    except TimeoutError as exc:
        raise rules.unresolved(f"{subject} host {host} did not resolve in time") from exc
    except (OSError, ValueError) as exc:  # gaierror, or a resolver answering garbage
        raise rules.unresolved(f"{subject} host {host} did not resolve: {exc}") from exc
    if not addresses:
        raise rules.unresolved(f"{subject} host {host} resolved to no address")
    for address in () if internal else addresses:  # every answer: the connection may try any of them
        _judge(host, address, rules)
    return Vetted(url, tuple(dict.fromkeys(str(address) for address in addresses)))


def _allowed(host: str, allowlist: tuple[str, ...]) -> bool:
    entries = (entry.lower().rstrip(".") for entry in allowlist)
    return any((entry.startswith(".") and host.endswith(entry)) or host == entry for entry in entries)


def _ip_literal(host: str, rules: UrlRules) -> _IPAddress | None:
    """The address a numeric host denotes (WHATWG IPv4 parsing), None for a DNS name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)  # scoped (%zone) forms are link-local and refused later
        except ValueError as exc:
            raise rules.forbidden(f"{rules.subject} host {host!r} is not a valid IPv6 address") from exc
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # a trailing dot does not change the address
    if not _ENDS_IN_NUMBER.fullmatch(parts[-1]):
        return None
    numbers = [_ipv4_part(part) for part in parts]
    if None in numbers or len(numbers) > 4:
        raise rules.forbidden(f"{rules.subject} host {host} is not a valid IPv4 address")
    values = [number for number in numbers if number is not None]
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        raise rules.forbidden(f"{rules.subject} host {host} is not a valid IPv4 address")
    return ipaddress.IPv4Address(last + sum(value << 8 * (3 - i) for i, value in enumerate(head)))


def _ipv4_part(part: str) -> int | None:
    match = _IPV4_PART.fullmatch(part)
    if match is None:
        return None
    if match["hex"] is not None:
        return int(match["hex"] or "0", 16)
    if match["oct"] is not None:
        return int(match["oct"], 8)
    return int(match["dec"])


def _judge(host: str, address: _IPAddress, rules: UrlRules) -> None:
    """Refuse `address` unless it is public (or trusted); IPv6 forms embedding IPv4 are judged by the IPv4."""
    effective = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    judged: _IPAddress = effective or address
    if any(judged in network or address in network for network in rules.trusted_networks):
        return
    reason = _forbidden_reason(judged)
    if reason is not None:
        shown = f"{address} (IPv4 {effective})" if effective is not None else str(address)
        raise rules.forbidden(f"{rules.subject} host {host} resolves to {shown}, {reason}")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return address.ipv4_mapped
    if address.sixtofour is not None:  # 2002:aabb:ccdd::/48
        return address.sixtofour
    packed = address.packed
    if address in _NAT64 or (packed[:12] == bytes(12) and int(address) > 1):  # NAT64, ::a.b.c.d
        return ipaddress.IPv4Address(packed[12:])
    return None


def _forbidden_reason(address: _IPAddress) -> str | None:
    """Why `address` must not be fetched from, or None when it is a public unicast address."""
    site_local = isinstance(address, ipaddress.IPv6Address) and address.is_site_local
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (cloud metadata lives there)"),
        (address.is_multicast, "a multicast address"),
        (address in _CGNAT, "a carrier-grade NAT address (100.64.0.0/10)"),
        (address.is_private or site_local, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "a non-public address"),
    )
    return next((reason for failed, reason in checks if failed), None)


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


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


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
