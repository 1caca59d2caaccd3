"""Vetting an outbound URL before any socket opens (SSRF): scheme `https` only, no credentials, optional host allowlist,
every resolved address public. The addresses it vetted are the only ones a connection may then use
(`consumer.images.https_download.pinned_session`), so a DNS answer that changes between the check and the connect
(rebinding) cannot steer it elsewhere.

Numeric IPv4 hosts are normalised the way browsers and `inet_aton` read them (`2130706433`, `0177.0.0.1`,
`0x7f.1`, `127.1` all mean 127.0.0.1) and judged as that address; a non-canonical spelling of a *public*
address is refused too, since other layers (proxies, TLS, logs) may read it differently.

The start-image download and the result notifier's webhooks use the same rules; `UrlRules` says how their refusals
are worded and which errors they raise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from yarl import URL

from consumer.errors import ImageFetchError, ImageUrlForbidden, VidgenError

__all__ = ["IPNetwork", "Resolve", "UrlRules", "Vetted", "parse_url", "vet_url"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]
"""`async (host, port) -> IP address strings`. Default: the system resolver; tests inject their own."""

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


def parse_url(url: str, rules: UrlRules) -> URL:
    try:
        return URL(url)
    except (ValueError, TypeError) as exc:
        raise rules.forbidden(f"{rules.subject} is not a valid URL: {exc}") from exc


async def vet_url(url: str | URL, rules: UrlRules, resolver: Resolve | None = None) -> Vetted:
    """Apply every rule to one hop, resolving the host with `resolver` (default: the system resolver).

    Raises `rules.forbidden` when the URL breaks a rule and `rules.unresolved` when DNS fails. A connection
    must then use only the returned addresses: `pinned_session`."""
    url = parse_url(url, rules) if isinstance(url, str) else url
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


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
