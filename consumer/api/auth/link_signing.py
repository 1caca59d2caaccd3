"""Signed content links. Pure (the key and the time are passed in).

A browser's `<video>` and `<img>` cannot send `Authorization`, so they cannot fetch `GET /v1/videos/{id}/content`
with the caller's credential, and the credential must never go in a URL. Instead the caller asks the API for a link
(`POST /v1/videos/{id}/links`) whose `token` query parameter stands in for the credential on that one route.

A token is `<expiry>.<mac>.<credential>.<tenant>`: the expiry in Unix seconds, then 43 characters of URL-safe
base64 of HMAC-SHA256 under the API's key (`VIDGEN_API_ID_KEY`, the same on every replica) over the canonical JSON
array of the purpose, the tenant, the job id, the expiry and the credential, then the credential that asked for the
link (the API key's id, 16 hex characters, or `t` for a bearer token), then the tenant (the view looks jobs up by
tenant). So a token opens one job of one tenant, only for a few minutes, on any replica; it is not an API key and
cannot be turned into one, and nobody without the key can make, stretch or reattribute one. The API checks the
named key against its keys file on every use, so revoking the key cuts its links off; a bearer token's link expires
no later than the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from consumer.core.intake import usable_id

__all__ = ["LINK_TTL_S", "LinkGrant", "sign_link", "verify_link"]

LINK_TTL_S = 300
_PURPOSE = "vidgen-api-content-link-v2"
_MAC_CHARS = 43  # 32 bytes in unpadded base64
_FROM_BEARER = "t"
_KEY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class LinkGrant:
    """Who a valid token speaks for: the tenant, and the API key that asked for it (None: a bearer token did)."""

    tenant_id: str
    key_id: str | None


def _mac(key: bytes, tenant_id: str, job_id: str, expires: int, credential: str) -> str:
    canonical = json.dumps(
        [_PURPOSE, tenant_id, job_id, expires, credential], separators=(",", ":"), ensure_ascii=False
    )
    digest = hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign_link(
    key: bytes,
    *,
    tenant_id: str,
    job_id: str,
    now: float,
    key_id: str | None,
    expires_by: float | None = None,
    ttl_s: int = LINK_TTL_S,
) -> tuple[str, int]:
    """The token for `job_id` of `tenant_id`, asked for with the API key `key_id` (None: a bearer token that
    expires at `expires_by`), and when it expires (Unix seconds)."""
    expires = int(now) + ttl_s if expires_by is None else min(int(now) + ttl_s, int(expires_by))
    credential = _FROM_BEARER if key_id is None else key_id
    return f"{expires}.{_mac(key, tenant_id, job_id, expires, credential)}.{credential}.{tenant_id}", expires


def verify_link(key: bytes, token: str, *, job_id: str, now: float, max_ttl_s: int = LINK_TTL_S) -> LinkGrant | None:
    """Who a token speaks for when it is ours, for `job_id` and not expired; else None (never why: a caller learns
    nothing by probing)."""
    expires_text, _, rest = token.partition(".")
    mac, _, rest = rest.partition(".")
    credential, _, tenant = rest.partition(".")
    if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12):
        return None
    expires = int(expires_text)
    if len(mac) != _MAC_CHARS or usable_id(tenant, max_length=64) is None or not now <= expires <= now + max_ttl_s:
        return None
    if credential != _FROM_BEARER and not _KEY_ID.fullmatch(credential):
        return None
    expected = _mac(key, tenant, job_id, expires, credential).encode("ascii")
    if not hmac.compare_digest(mac.encode("ascii", "replace"), expected):
        return None
    return LinkGrant(tenant_id=tenant, key_id=None if credential == _FROM_BEARER else credential)
