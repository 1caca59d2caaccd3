"""Standard Webhooks signatures of the notifier's deliveries, made by the `standardwebhooks` library itself, so a
receiver verifies them with `standardwebhooks.Webhook(secret).verify(body, headers)` unchanged.

Headers: `webhook-id` (stable across retries: receivers de-duplicate on it), `webhook-timestamp` (unix seconds of
this attempt) and `webhook-signature`: one `v1,<base64 HMAC-SHA256>` per secret, space-separated, the current secret
first, so a delivery during a rotation verifies with either secret.

Secrets: a `whsec_...` secret is what Standard Webhooks defines (the key is the base64 after the prefix); any other
secret (an operator's `VIDGEN_NOTIFIER_WEBHOOKS` secret) is used as its UTF-8 bytes, which
`Webhook(secret.encode())` verifies.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook as StandardWebhook

__all__ = ["ID_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "signer", "standard_headers"]

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
_STANDARD_PREFIX = "whsec_"


def signer(secret: str) -> StandardWebhook:
    """The library's signer for one secret (raises for a `whsec_` secret that is not base64)."""
    return StandardWebhook(secret if secret.startswith(_STANDARD_PREFIX) else secret.encode("utf-8"))


def standard_headers(message_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers of `body`, signed at `timestamp` with every one of `secrets`."""
    if not secrets:
        raise ValueError("a delivery needs at least one secret")
    at = datetime.fromtimestamp(timestamp, UTC)
    signatures = " ".join(signer(secret).sign(message_id, at, body) for secret in secrets)
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signatures}
