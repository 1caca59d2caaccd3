"""Which POSTs a record on the results or progress topic calls for, and how each is signed.

A result goes to its tenant's operator-configured webhook (`VIDGEN_NOTIFIER_WEBHOOKS`: the result JSON itself,
signed the Standard Webhooks way and, for one more release, with the deprecated `X-Vidgen-Signature` too) and to each
of the tenant's own endpoints (`POST /v1/webhooks`) subscribed to its event type (OpenAI's event shape, Standard
Webhooks only). A progress event goes to the endpoints subscribed to `video.progress`, throttled per job and
endpoint, with one attempt and no dead letter: the result is the event that counts.

Each dispatch names its breaker (`destination`: the tenant for its operator webhook, the endpoint id for an endpoint,
so one broken endpoint does not silence the tenant's others) and its bound (`tenant`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from consumer.core.webhook_events import (
    ProgressThrottle,
    progress_webhook_event,
    result_event_type,
    result_webhook_event,
)
from consumer.errors import SecretUnreadable
from consumer.webhooks.directory import EndpointDirectory
from consumer.webhooks.secret_box import SecretBox
from producer_examples.dedupe import delivery_key
from producer_examples.notifier_settings import Webhook
from schemas.events import VideoProgress, VideoResult
from schemas.webhooks import WebhookEndpointRecord, WebhookEvent, WebhookEventType

__all__ = ["Dispatch", "DispatchPlanner"]

log = logging.getLogger(__name__)

OPERATOR_EVENT = "video.result"  # X-Vidgen-Event of operator webhooks, whose body is the result itself


@dataclass(frozen=True)
class Dispatch:
    """One POST to make: to whom, what, signed how, and how hard to try."""

    tenant: str
    destination: str
    url: str
    body: bytes
    message_id: str
    event: str
    secrets: tuple[str, ...]  # Standard Webhooks secrets, the current one first; empty when they did not decrypt
    legacy: bool = False  # an operator webhook: also the deprecated X-Vidgen-* headers
    best_effort: bool = False  # progress: one attempt, nothing dead-lettered

    @property
    def endpoint_id(self) -> str | None:
        return None if self.legacy else self.destination


class DispatchPlanner:
    def __init__(
        self,
        *,
        operator_webhooks: dict[str, Webhook],
        directory: EndpointDirectory,
        box: SecretBox | None,
        throttle: ProgressThrottle,
        wall_clock: Callable[[], datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self._operator = operator_webhooks
        self._directory = directory
        self._box = box
        self._throttle = throttle
        self._wall_clock = wall_clock
        self._monotonic = monotonic

    def for_result(self, result: VideoResult, value: bytes) -> list[Dispatch]:
        tenant = result.tenant_id or ""
        dispatches = []
        webhook = self._operator.get(tenant)
        if webhook is not None:
            dispatches.append(
                Dispatch(
                    tenant=tenant,
                    destination=tenant,
                    url=str(webhook.url),
                    body=value,
                    message_id=delivery_key(result.tenant_id, result.request_id, result.status),
                    event=OPERATOR_EVENT,
                    secrets=webhook.secrets,
                    legacy=True,
                )
            )
        for endpoint in self._endpoints(result.tenant_id, result_event_type(result.status)):
            dispatches.append(self._to_endpoint(endpoint, result_webhook_event(endpoint_id=endpoint.id, result=result)))
        return dispatches

    def for_progress(self, progress: VideoProgress) -> list[Dispatch]:
        now = self._monotonic()
        dispatches = []
        for endpoint in self._endpoints(progress.tenant_id, "video.progress"):
            if not self._throttle.allow(endpoint.id, progress.request_id, now):
                continue
            event = progress_webhook_event(endpoint_id=endpoint.id, progress=progress)
            dispatches.append(self._to_endpoint(endpoint, event, best_effort=True))
        return dispatches

    def _endpoints(self, tenant: str | None, event_type: WebhookEventType) -> list[WebhookEndpointRecord]:
        if self._box is None:
            return []  # tenant webhooks are off: no key to read their secrets with
        return self._directory.subscribed(tenant, event_type)

    def _to_endpoint(
        self, endpoint: WebhookEndpointRecord, event: WebhookEvent, *, best_effort: bool = False
    ) -> Dispatch:
        return Dispatch(
            tenant=endpoint.tenant_id,
            destination=endpoint.id,
            url=endpoint.url,
            body=event.model_dump_json(exclude_none=True).encode("utf-8"),
            message_id=event.id,
            event=event.type,
            secrets=self._secrets(endpoint),
            best_effort=best_effort,
        )

    def _secrets(self, endpoint: WebhookEndpointRecord) -> tuple[str, ...]:
        box = self._box
        if box is None:
            return ()
        try:
            return tuple(box.open(secret.ciphertext) for secret in endpoint.secrets_at(self._wall_clock()))
        except SecretUnreadable as exc:
            log.warning("endpoint %s: %s", endpoint.id, exc.message)
            return ()
