"""Request ids the API makes. Pure (randomness and the key are passed in).

`vid-` and 32 hex digits (128 bits): random for a plain submission, so nobody can guess another job's id; with an
`Idempotency-Key`, HMAC-SHA256 under the API's own key over a canonical JSON array of the purpose, the tenant and the
key, so the same key from the same tenant always names the same job on every replica, two tenants never share one
(`a` + `b:c` and `a:b` + `c` encode differently), and nobody without the key can predict it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

__all__ = ["IDEMPOTENCY_KEY_PATTERN", "idempotent_id", "random_id"]

_PREFIX = "vid-"
_PURPOSE = "vidgen-api-idempotency-v1"
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII without spaces, as Stripe's


def random_id(entropy: bytes) -> str:
    """An id from 16 random bytes (`secrets.token_bytes(16)`)."""
    if len(entropy) < 16:
        raise ValueError("a random id needs 16 bytes of entropy")
    return _PREFIX + entropy[:16].hex()


def idempotent_id(key: bytes, tenant_id: str, idempotency_key: str) -> str:
    canonical = json.dumps([_PURPOSE, tenant_id, idempotency_key], separators=(",", ":"), ensure_ascii=False)
    return _PREFIX + hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
