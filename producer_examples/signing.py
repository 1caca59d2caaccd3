"""HMAC-SHA256 webhook signatures, the scheme both examples use. Pure: the clock comes in as an argument.

Header: `X-Vidgen-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. Several `v1=` entries
may appear (a sender signing with both the old and the new secret during a rotation); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from consumer.errors import SignatureError

__all__ = ["SIGNATURE_HEADER", "sign", "verify"]

SIGNATURE_HEADER = "X-Vidgen-Signature"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, *secrets: str, timestamp: int) -> str:
    """The header value for `body` signed at `timestamp` (unix seconds): one `v1=` per secret, so a sender in
    the middle of a rotation signs with the new and the old one."""
    if not secrets:
        raise ValueError("sign needs at least one secret")
    return f"t={timestamp}," + ",".join(f"v1={_digest(secret, timestamp, body)}" for secret in secrets)


def verify(header: str | None, body: bytes, secrets: Sequence[str], *, now: float, tolerance_s: float) -> int:
    """Check a signature header against the raw body. Returns the signed timestamp; raises SignatureError.

    A timestamp further than `tolerance_s` from `now`, in either direction, is refused: an old signature
    cannot be replayed, and a clock far ahead cannot mint signatures that stay valid for long."""
    if not header:
        raise SignatureError("missing", f"{SIGNATURE_HEADER} header is missing")
    timestamp, candidates = _parse(header)
    if timestamp < now - tolerance_s:
        raise SignatureError("stale", f"signature timestamp is {now - timestamp:.0f}s old (tolerance {tolerance_s}s)")
    if timestamp > now + tolerance_s:
        raise SignatureError(
            "future",
            f"signature timestamp is {timestamp - now:.0f}s ahead (tolerance {tolerance_s}s)",
        )
    expected = [_digest(secret, timestamp, body) for secret in secrets if secret]
    # Every pair is compared, in constant time, so the answer's timing says nothing about which came close.
    matched = False
    for candidate in candidates:
        for digest in expected:
            matched |= hmac.compare_digest(candidate.encode("ascii"), digest.encode("ascii"))
    if not matched:
        raise SignatureError("mismatch", "signature does not match the body")
    return timestamp


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed", f"{SIGNATURE_HEADER} part {part.strip()!r} is not name=value")
        if name == "t":
            if not (value.isascii() and value.isdigit()) or len(value) > 12 or timestamp is not None:
                raise SignatureError("malformed", f"{SIGNATURE_HEADER} needs exactly one integer t=")
            timestamp = int(value)
        elif name == "v1":
            if len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
                raise SignatureError("malformed", "v1 must be 64 lowercase hex digits")
            candidates.append(value)
        # Other schemes (v0, v2...) are ignored, so senders can add one without breaking older receivers.
    if timestamp is None or not candidates:
        raise SignatureError("malformed", f"{SIGNATURE_HEADER} needs t= and at least one v1=")
    return timestamp, candidates
