"""A throwaway CA (trustme) for HTTPS servers on loopback: the server's context and a client context trusting it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import trustme

__all__ = ["Tls", "loopback_tls"]


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def loopback_tls(*names: str) -> Tls:
    """A certificate for `names` (hostnames or IP addresses) signed by a new CA that only `client` trusts."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(server, client)
