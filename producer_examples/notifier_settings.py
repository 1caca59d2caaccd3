"""`VIDGEN_NOTIFIER_*` settings of the result notifier: each tenant's operator-configured webhook with its own
signing secret, the hosts allowed to be internal, the bounds that keep one tenant's endpoint from stalling the others,
and how `video.progress` reaches tenant endpoints. Tenant endpoints themselves (`POST /v1/webhooks`) come from the
webhooks topic and the shared `VIDGEN_WEBHOOK_*` settings."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["MIN_SECRET_CHARS", "NotifierSettings", "Webhook"]

MIN_SECRET_CHARS = 32
_STANDARD_PREFIX = "whsec_"
_MIN_STANDARD_KEY_BYTES = 24  # Standard Webhooks: 24 to 64 bytes


class Webhook(BaseModel):
    """One tenant's endpoint: `{"url": "https://...", "secret": "...", "previous_secret": "..."}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: HttpUrl = Field(description="https only; vetted again (public addresses only) before every delivery.")
    secret: SecretStr = Field(description=f"This tenant's HMAC secret, at least {MIN_SECRET_CHARS} characters.")
    previous_secret: SecretStr | None = Field(None, description="Also signed with during a rotation.")

    @field_validator("url")
    @classmethod
    def _https_without_credentials(cls, url: HttpUrl) -> HttpUrl:
        if url.scheme != "https":
            raise ValueError("webhook URLs must be https")
        if url.username is not None or url.password is not None:
            raise ValueError("webhook URLs must not carry credentials (user:pass@host)")
        return url

    @field_validator("secret", "previous_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is None:
            return None
        value = secret.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"webhook secrets need at least {MIN_SECRET_CHARS} characters")
        if value.startswith(_STANDARD_PREFIX):  # a Standard Webhooks secret: base64 of the key after the prefix
            encoded = value.removeprefix(_STANDARD_PREFIX)
            try:
                key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except binascii.Error:
                key = b""
            if len(key) < _MIN_STANDARD_KEY_BYTES:
                raise ValueError(
                    f"a whsec_ secret needs base64 of at least {_MIN_STANDARD_KEY_BYTES} bytes after whsec_"
                )
        return secret

    @model_validator(mode="after")
    def _rotation_changes_the_secret(self) -> Webhook:
        if self.previous_secret is not None and self.previous_secret == self.secret:
            raise ValueError("previous_secret must differ from secret")
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets to sign with, the current one first."""
        return tuple(s.get_secret_value() for s in (self.secret, self.previous_secret) if s is not None)


class NotifierSettings(BaseSettings):
    """`VIDGEN_NOTIFIER_*`. Kafka connection and the results topic come from the worker's `VIDGEN_*` Settings."""

    model_config = SettingsConfigDict(
        env_prefix="VIDGEN_NOTIFIER_", extra="ignore", frozen=True, populate_by_name=True, hide_input_in_errors=True
    )

    group: str = "video-notifier"
    dlq_topic: str = "video.results.notifier-dlq"
    webhooks: dict[str, Webhook] = Field(
        default_factory=dict,
        description='JSON map tenant_id -> {"url": "https://...", "secret": "...", "previous_secret": "..."}.',
    )
    allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Webhook hosts allowed to resolve to internal addresses (`.example.com` covers subdomains).",
    )
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    timeout_s: float = Field(10.0, gt=0, description="Per attempt: DNS, connect, TLS and the answer's headers.")
    max_concurrency: int = Field(64, ge=1, description="Deliveries in flight at once, all tenants together.")
    tenant_concurrency: int = Field(4, ge=1, description="Deliveries in flight at once to one tenant.")
    max_pending: int = Field(
        512, ge=1, description="Results read and not yet answered; while this many are, partitions are paused."
    )
    breaker_failures: int = Field(5, ge=1, description="Failed attempts in a row that open a tenant's breaker.")
    breaker_open_s: float = Field(
        30.0, gt=0, description="An open breaker dead-letters at once (endpoint_unavailable), then tries again."
    )
    fetch_max_wait_ms: int = Field(
        500,
        ge=1,
        le=10_000,
        description="How long a fetch waits for new results. Apache Kafka answers as soon as one arrives; a broker "
        "that answers only when the wait expires (the embedded tansu) adds up to this much to every delivery.",
    )
    dedupe_capacity: int = Field(100_000, ge=1)
    progress_deliveries: bool = Field(
        True,
        description="Read the progress topic and deliver `video.progress` to tenant endpoints that subscribed to it "
        "(best effort: one attempt, never dead-lettered).",
    )
    progress_interval_s: float = Field(
        1.0, ge=1.0, description="At most one `video.progress` delivery per job per endpoint this often."
    )
    host: str = "0.0.0.0"  # noqa: S104 - probes reach the notifier from outside the pod
    port: int = Field(8082, ge=0, le=65_535)
    shutdown_grace_s: float = Field(30.0, ge=0, description="Time in-flight deliveries get on SIGTERM.")
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("VIDGEN_NOTIFIER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector, e.g. http://jaeger:4318; unset: spans are recorded, not exported.",
    )

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value
