"""Errors of webhook delivery and signatures (the notifier and the product hook in `producer_examples/`): never in
a result event. The notifier's outcome codes are the `vidgen-error-code` of its DLQ records (the event contract's
table of them, docs/event-contract.md); a refused signature is the product hook's 401."""

from __future__ import annotations

from typing import Literal

from consumer.errors.root import VidgenError

__all__ = [
    "DeliveryRejected",
    "DeliveryRetriable",
    "EndpointUnavailable",
    "SecretUnreadable",
    "SignatureError",
    "SignatureReason",
    "WebhookUnresolved",
    "WebhookUrlForbidden",
]

SignatureReason = Literal["missing", "malformed", "stale", "future", "mismatch"]


class WebhookUrlForbidden(VidgenError):
    """The webhook URL breaks the outbound rules (scheme, credentials, a non-public address...)."""

    code = "webhook_url_forbidden"
    in_results = False


class WebhookUnresolved(VidgenError):
    """The webhook's host did not resolve; DNS may come back."""

    code = "delivery_failed"
    retriable = True
    in_results = False


class DeliveryRetriable(VidgenError):
    """One delivery attempt failed in a way worth another: a timeout, a connection or DNS error, 408/425/429 or
    5xx. After the last attempt the delivery is `delivery_failed`."""

    code = "delivery_failed"
    retriable = True
    in_results = False


class DeliveryRejected(VidgenError):
    """Not worth another attempt: the receiver answered with another 3xx/4xx."""

    code = "delivery_rejected"
    in_results = False


class EndpointUnavailable(VidgenError):
    """The tenant's circuit breaker is open: no attempt went out."""

    code = "endpoint_unavailable"
    in_results = False

    def __init__(self, message: str = "the endpoint's circuit breaker is open") -> None:
        super().__init__(message)


class SignatureError(VidgenError, ValueError):
    """Why a webhook signature was refused. `reason` is stable and machine-readable; the message is for logs. A
    `ValueError` too, as it always was."""

    code = "invalid_signature"
    in_results = False

    def __init__(self, reason: SignatureReason, message: str) -> None:
        super().__init__(message)
        self.reason: SignatureReason = reason


class SecretUnreadable(VidgenError):
    """A stored secret does not decrypt under any configured key (its key was dropped too early, or the record was
    not written by this deployment)."""

    code = "webhook_secret_unreadable"
    in_results = False
