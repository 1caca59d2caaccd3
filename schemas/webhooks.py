"""Tenant webhooks: the API's bodies (`/v1/webhooks`), the event a receiver gets, and the record on the compacted
webhooks topic that the API writes and every API replica and the notifier follow.

A receiver gets OpenAI's event shape, `{"id", "object": "event", "type", "created_at", "data": {"id"}}`, signed the
Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Signing secrets never travel or
rest in clear: the topic holds them encrypted (`StoredSecret.ciphertext`, Fernet under the operator's key), and the
API shows a secret once, in the answer that created it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from schemas.events import ID_PATTERN

__all__ = [
    "ENDPOINT_ID_PATTERN",
    "WEBHOOK_EVENT_TYPES",
    "StoredSecret",
    "WebhookEndpoint",
    "WebhookEndpointCreate",
    "WebhookEndpointCreated",
    "WebhookEndpointDeleted",
    "WebhookEndpointList",
    "WebhookEndpointRecord",
    "WebhookEvent",
    "WebhookEventData",
    "WebhookEventType",
    "WebhookSecretRotated",
]

WebhookEventType = Literal["video.completed", "video.failed", "video.progress"]
WEBHOOK_EVENT_TYPES: tuple[WebhookEventType, ...] = ("video.completed", "video.failed", "video.progress")
ENDPOINT_ID_PATTERN = r"^wh_[0-9a-f]{32}$"

EndpointId = Annotated[str, StringConstraints(pattern=ENDPOINT_ID_PATTERN)]
EndpointUrl = Annotated[str, StringConstraints(min_length=9, max_length=2048, pattern=r"^https://[\x21-\x7e]+$")]
Events = Annotated[
    list[WebhookEventType],
    Field(
        min_length=1,
        max_length=len(WEBHOOK_EVENT_TYPES),
        description="What to deliver: `video.completed`, `video.failed` (failed, rejected, cancelled or expired) and "
        "`video.progress` (at most one per second per job).",
    ),
]
_URL_DESCRIPTION = (
    "https only, printable ASCII (punycode for other hosts), no credentials; the host must resolve to public "
    "addresses (unless the operator allows it). Checked when the endpoint is created and again before every delivery; "
    "redirects are not followed."
)


class WebhookEndpointCreate(BaseModel):
    """The body of `POST /v1/webhooks`."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="WebhookEndpointCreate")

    url: EndpointUrl = Field(description=_URL_DESCRIPTION)
    events: Events

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[WebhookEventType]) -> list[WebhookEventType]:
        if len(set(events)) != len(events):
            raise ValueError("events must not repeat")
        return events


class WebhookEndpoint(BaseModel):
    """An endpoint as the API shows it: never its secret."""

    model_config = ConfigDict(frozen=True, title="WebhookEndpoint")

    id: EndpointId
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[WebhookEventType]
    created_at: int = Field(description="Unix seconds.")
    previous_secret_expires_at: int | None = Field(
        None, description="Unix seconds; set while a rotated-out secret still signs deliveries too."
    )


class WebhookEndpointCreated(WebhookEndpoint):
    """The answer to `POST /v1/webhooks`: the endpoint and its signing secret, shown this once."""

    model_config = ConfigDict(frozen=True, title="WebhookEndpointCreated")

    secret: str = Field(description="`whsec_` + base64 of 32 random bytes; verify deliveries with it. Shown once.")


class WebhookSecretRotated(WebhookEndpointCreated):
    """The answer to `POST /v1/webhooks/{id}/rotate`: the new secret, shown this once. Until
    `previous_secret_expires_at` deliveries carry a signature with each secret."""

    model_config = ConfigDict(frozen=True, title="WebhookSecretRotated")


class WebhookEndpointList(BaseModel):
    """The caller's endpoints (a tenant has at most `VIDGEN_WEBHOOK_MAX_ENDPOINTS`: one page)."""

    model_config = ConfigDict(frozen=True, title="WebhookEndpointList")

    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]
    has_more: bool = False


class WebhookEndpointDeleted(BaseModel):
    """The answer to `DELETE /v1/webhooks/{id}`."""

    model_config = ConfigDict(frozen=True, title="WebhookEndpointDeleted")

    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: Literal[True] = True


class WebhookEventData(BaseModel):
    """What the event is about: the video job's id (and, for `video.progress`, how far it is)."""

    model_config = ConfigDict(frozen=True, title="WebhookEventData")

    id: str = Field(description="The video job's id (its request id).")
    progress: int | None = Field(None, ge=0, le=100, description="`video.progress` only: percent done.")


class WebhookEvent(BaseModel):
    """The body of a tenant webhook delivery (OpenAI's event shape). `id` is also the `webhook-id` header: the same
    for every attempt and every redelivery of one event to one endpoint, so receivers de-duplicate on it."""

    model_config = ConfigDict(frozen=True, title="WebhookEvent")

    id: str = Field(pattern=r"^evt_[0-9a-f]{32}$")
    object: Literal["event"] = "event"
    type: WebhookEventType
    created_at: int = Field(description="Unix seconds: when the job ended (or made that progress).")
    data: WebhookEventData


class StoredSecret(BaseModel):
    """One signing secret as it rests on the topic: encrypted under the operator's key."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="StoredSecret")

    ciphertext: str = Field(min_length=1, max_length=1024, description="Fernet token of the `whsec_...` secret.")
    expires_at: AwareDatetime | None = Field(None, description="A rotated-out secret signs until then; None: current.")


class WebhookEndpointRecord(BaseModel):
    """A value on the compacted webhooks topic, keyed by the endpoint id; a deleted endpoint is a tombstone (no
    value). Written by the job API only."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="WebhookEndpointRecord")

    schema_version: Literal[1] = 1
    id: EndpointId
    tenant_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
    url: EndpointUrl
    events: Events
    created_at: AwareDatetime
    secrets: list[StoredSecret] = Field(min_length=1, max_length=3, description="The current secret first.")

    def secrets_at(self, now: datetime) -> list[StoredSecret]:
        """The secrets that sign at `now`: the current one, and rotated-out ones until they expire."""
        return [secret for secret in self.secrets if secret.expires_at is None or secret.expires_at > now]
