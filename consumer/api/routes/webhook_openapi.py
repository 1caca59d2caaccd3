"""The `/v1/webhooks` part of the OpenAPI document, and the outgoing delivery as an OpenAPI 3.1 `webhooks` entry
(body and Standard Webhooks headers). `consumer.api.routes.openapi` merges both in, passing its own helpers so that
every operation reads the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from schemas.webhooks import (
    ENDPOINT_ID_PATTERN,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointList,
    WebhookEvent,
    WebhookSecretRotated,
)

__all__ = ["WEBHOOK_MODELS", "delivery_webhooks", "webhook_paths"]

Mode = Literal["validation", "serialization"]
Operation = Callable[..., dict[str, Any]]
Responses = Callable[..., dict[str, Any]]
Content = Callable[[str], dict[str, Any]]

WEBHOOK_MODELS: list[tuple[type[BaseModel], Mode]] = [
    (WebhookEndpointCreate, "validation"),
    (WebhookEndpoint, "serialization"),
    (WebhookEndpointCreated, "serialization"),
    (WebhookSecretRotated, "serialization"),
    (WebhookEndpointList, "serialization"),
    (WebhookEndpointDeleted, "serialization"),
    (WebhookEvent, "serialization"),
]


def _endpoint_id() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": ENDPOINT_ID_PATTERN}}


def webhook_paths(operation: Operation, responses: Responses, content: Content) -> dict[str, Any]:
    """The operations on a tenant's webhook endpoints; 403 when the operator has not enabled them."""

    def answer(description: str, model: str, **extra: Any) -> dict[str, Any]:
        return {"description": description, "content": content(model), **extra}

    created = answer(
        "Created. `secret` is shown this once.",
        "WebhookEndpointCreated",
        headers={"Location": {"schema": {"type": "string"}}},
    )
    return {
        "/v1/webhooks": {
            "post": operation(
                "Create a webhook endpoint (the signing secret is in this answer only)",
                responses({201: created}, 400, 403, 409, 415),
                requestBody={"required": True, "content": content("WebhookEndpointCreate")},
            ),
            "get": operation(
                "List your webhook endpoints",
                responses({200: answer("Your endpoints (one page).", "WebhookEndpointList")}, 403),
            ),
        },
        "/v1/webhooks/{id}": {
            "get": operation(
                "A webhook endpoint",
                responses({200: answer("The endpoint.", "WebhookEndpoint")}, 403, 404),
                parameters=[_endpoint_id()],
            ),
            "delete": operation(
                "Delete a webhook endpoint",
                responses({200: answer("Deleted.", "WebhookEndpointDeleted")}, 403, 404),
                parameters=[_endpoint_id()],
            ),
        },
        "/v1/webhooks/{id}/rotate": {
            "post": operation(
                "Rotate the signing secret: the new one is in this answer only; the old one keeps signing until "
                "`previous_secret_expires_at`",
                responses({200: answer("Rotated.", "WebhookSecretRotated")}, 403, 404),
                parameters=[_endpoint_id()],
            )
        },
    }


def delivery_webhooks(content: Content) -> dict[str, Any]:
    """What the notifier POSTs to an endpoint, as OpenAPI 3.1 describes outgoing calls."""
    header = {"in": "header", "required": True, "schema": {"type": "string"}}
    return {
        "videoEvent": {
            "post": {
                "summary": "A video job ended (or progressed): verify with standardwebhooks.Webhook(secret).verify",
                "parameters": [
                    {**header, "name": "webhook-id", "description": "The event id: the same on every retry."},
                    {**header, "name": "webhook-timestamp", "description": "Unix seconds of this attempt."},
                    {
                        **header,
                        "name": "webhook-signature",
                        "description": "`v1,<base64 HMAC-SHA256>` per secret, space-separated (two during a rotation).",
                    },
                ],
                "requestBody": {"required": True, "content": content("WebhookEvent")},
                "responses": {"2XX": {"description": "Received. Anything else is retried with backoff."}},
            }
        }
    }
