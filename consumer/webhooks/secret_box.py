"""Signing secrets of tenant endpoints: made here, encrypted before they leave the API, decrypted only by the
notifier when it signs. `cryptography`'s MultiFernet under `VIDGEN_WEBHOOK_SECRETS_KEY` (newest key first): the first
key encrypts, every key decrypts, so an operator rotates the key by putting a new one in front and, once
`vidgen webhook-keys reseal` has re-encrypted every endpoint (`consumer.webhooks.reseal`), dropping the old one.
Secrets are never logged; errors never carry them."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from consumer.errors import SecretUnreadable
from consumer.settings.webhooks import secret_keys

__all__ = ["SECRET_PREFIX", "SecretBox", "new_secret"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
_SECRET_BYTES = 32  # Standard Webhooks: between 24 and 64 bytes


def new_secret(entropy: bytes | None = None) -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes (`entropy`, for tests only)."""
    raw = entropy if entropy is not None else secrets.token_bytes(_SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


class SecretBox:
    def __init__(self, key: SecretStr) -> None:
        self._fernet = MultiFernet([Fernet(part.encode("ascii")) for part in secret_keys(key)])

    def seal(self, secret: str) -> str:
        """`secret` encrypted (and authenticated) under the newest key."""
        return self._fernet.encrypt(secret.encode("utf-8")).decode("ascii")

    def open(self, ciphertext: str) -> str:
        """The secret `seal` encrypted, under whichever configured key it was."""
        return self._unless_unreadable(self._fernet.decrypt, ciphertext).decode("utf-8")

    def reseal(self, ciphertext: str) -> str:
        """The same secret encrypted under the newest key, so that older keys can be dropped."""
        return self._unless_unreadable(self._fernet.rotate, ciphertext).decode("ascii")

    @staticmethod
    def _unless_unreadable(step: Callable[[bytes], bytes], ciphertext: str) -> bytes:
        try:
            return step(ciphertext.encode("ascii"))
        except (InvalidToken, UnicodeError) as exc:
            raise SecretUnreadable(
                "a webhook secret does not decrypt under any VIDGEN_WEBHOOK_SECRETS_KEY key"
            ) from exc
