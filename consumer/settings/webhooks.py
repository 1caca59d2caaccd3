"""Settings of tenant webhooks (`WebhookSettings`), read by the job API (which manages endpoints) and the notifier
(which delivers to them): where endpoints live, the key their secrets are encrypted with, and the bounds."""

from __future__ import annotations

import base64
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumer.settings.values import split_csv

__all__ = ["WebhookSettings", "secret_keys"]

_FERNET_KEY_BYTES = 32


class WebhookSettings(BaseSettings):
    """Tenant webhook endpoints: topic, secrets key, rotation overlap, bounds and the hosts allowed to be internal."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    webhooks_topic: str = Field(
        "video.webhooks",
        description="Compacted topic of tenant webhook endpoints (key: endpoint id; secrets encrypted); the job API "
        "writes it, every API replica and the notifier follow it.",
    )
    webhook_secrets_key: SecretStr | None = Field(
        None,
        description="Fernet keys (urlsafe base64 of 32 bytes), comma-separated, newest first: the first encrypts "
        "endpoint secrets, every one decrypts (key rotation). The same on the API and the notifier. Unset: tenant "
        "webhooks are off. Never logged.",
    )
    webhook_rotation_overlap_s: float = Field(
        86_400.0,
        ge=0,
        le=30 * 86_400.0,
        description="After `POST /v1/webhooks/{id}/rotate` the previous secret keeps signing deliveries (a second "
        "`v1,` signature) this long.",
    )
    webhook_max_endpoints: int = Field(10, ge=1, le=100, description="Webhook endpoints a tenant may have at once.")
    webhook_allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Hosts of tenant endpoints allowed to resolve to internal addresses (`.example.com` covers "
        "subdomains); empty: public addresses only. Tenant URLs are untrusted: keep this apart from "
        "`VIDGEN_NOTIFIER_ALLOW_HOSTS`, which covers only the operator's own webhooks.",
    )

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        return split_csv(value)

    @field_validator("webhook_secrets_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an empty variable (compose's `${VAR:-}`) leaves tenant webhooks off
        if value is not None:
            keys = secret_keys(value)
            if not keys:
                raise ValueError("needs at least one Fernet key")
            for position, key in enumerate(keys, start=1):
                try:
                    raw = base64.urlsafe_b64decode(key.encode("ascii"))
                except (ValueError, UnicodeEncodeError):
                    raw = b""
                if len(raw) != _FERNET_KEY_BYTES:
                    raise ValueError(f"key {position} is not a Fernet key (urlsafe base64 of 32 bytes)")
        return value


def secret_keys(value: SecretStr) -> tuple[str, ...]:
    """The Fernet keys of `VIDGEN_WEBHOOK_SECRETS_KEY`, newest first."""
    parts = split_csv(value.get_secret_value())
    return parts if isinstance(parts, tuple) else ()
