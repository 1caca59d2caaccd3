"""Signed webhook delivery with retries: one CLIENT span per attempt, traceparent in the HTTP headers.

Every POST is signed the Standard Webhooks way (`producer_examples.standard_signing`: `webhook-id`,
`webhook-timestamp`, `webhook-signature`), `webhook-id` the same on every attempt. A POST to an operator-configured
webhook also carries, for one more release, the deprecated `X-Vidgen-Signature` (`producer_examples.signing`),
`X-Vidgen-Event` and `X-Vidgen-Delivery` (the same value as `webhook-id`).

Every attempt vets the URL again (DNS can change between deliveries) with the start-image fetcher's rules
(`consumer.images.https_download`: https only, public addresses only unless the host is allowed to be internal) and
connects only to the addresses it vetted; redirects are not followed. The answer's body is never read: the
status line and headers decide, and the connection is closed, so an endpoint answering gigabytes costs no more
than aiohttp's read buffer. A tenant's circuit breaker is asked before each attempt and told how it went.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random
from yarl import URL

from consumer.core.rate_limit import Clock
from consumer.errors import (
    DeliveryRejected,
    DeliveryRetriable,
    EndpointUnavailable,
    WebhookUnresolved,
    WebhookUrlForbidden,
)
from consumer.images.https_download import pinned_session
from consumer.images.url_vetting import Resolve, UrlRules, vet_url
from producer_examples.breaker import CircuitBreaker
from producer_examples.dispatches import Dispatch
from producer_examples.signing import SIGNATURE_HEADER, sign
from producer_examples.standard_signing import standard_headers

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "Outcome", "WebhookDelivery"]

log = logging.getLogger(__name__)

EVENT_HEADER = "X-Vidgen-Event"  # deprecated, operator webhooks only
DELIVERY_HEADER = "X-Vidgen-Delivery"  # deprecated, operator webhooks only: the same as webhook-id
_RETRIABLE_STATUS = frozenset({408, 425, 429})

OutcomeCode = Literal[
    "delivered",
    "delivery_failed",
    "delivery_rejected",
    "webhook_url_forbidden",
    "endpoint_unavailable",
    "webhook_secret_unreadable",
]


@dataclass(frozen=True)
class Outcome:
    code: OutcomeCode
    attempts: int
    message: str = ""

    @property
    def delivered(self) -> bool:
        return self.code == "delivered"


class WebhookDelivery:
    def __init__(
        self,
        *,
        rules: UrlRules,
        endpoint_rules: UrlRules,
        tracer: Tracer,
        max_attempts: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        resolver: Resolve | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        self._rules = rules  # the operator's webhooks
        self._endpoint_rules = endpoint_rules  # tenant endpoints: URLs from outside the trust boundary
        self._tracer = tracer
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl_context = ssl_context
        self._resolver = resolver
        self._wall_clock = wall_clock

    async def deliver(self, dispatch: Dispatch, *, breaker: CircuitBreaker) -> Outcome:
        """POST until a 2xx, a refusal, an open breaker or the last attempt (one for a best-effort dispatch);
        never raises for HTTP."""
        if not dispatch.secrets:
            return Outcome("webhook_secret_unreadable", 0, "the endpoint's secret does not decrypt; nothing was sent")
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(1 if dispatch.best_effort else self._max_attempts),
            # Exponential backoff with jitter, so receivers coming back are not hit by every notifier at once.
            wait=wait_exponential(multiplier=self._backoff_initial_s, max=self._backoff_max_s)
            + wait_random(0, self._backoff_initial_s),
            retry=retry_if_exception_type(DeliveryRetriable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self._attempt(dispatch, breaker, number=attempts)
        except EndpointUnavailable:
            return Outcome("endpoint_unavailable", attempts - 1, "the endpoint's circuit breaker is open")
        except DeliveryRetriable as exc:
            return Outcome("delivery_failed", attempts, f"gave up after {attempts} attempt(s): {exc}")
        except DeliveryRejected as exc:
            return Outcome("delivery_rejected", attempts, str(exc))
        except WebhookUrlForbidden as exc:
            return Outcome("webhook_url_forbidden", attempts, exc.message)
        return Outcome("delivered", attempts)

    async def _attempt(self, dispatch: Dispatch, breaker: CircuitBreaker, *, number: int) -> None:
        """One POST if the breaker allows it; tells the breaker whether the endpoint answered."""
        if not breaker.allow():
            raise EndpointUnavailable
        try:
            await self._post(dispatch, number=number)
        except DeliveryRetriable:
            breaker.failed()
            raise
        except DeliveryRejected:
            breaker.succeeded()  # it answered: alive, whatever it thinks of this delivery
            raise
        breaker.succeeded()  # a refused URL (WebhookUrlForbidden) passes through: nothing was learnt

    async def _post(self, dispatch: Dispatch, *, number: int) -> None:
        with self._tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as span:
            url = URL(dispatch.url)
            span.set_attributes(
                {
                    "http.request.method": "POST",
                    # Scheme, host, port and path only: a query string may carry a receiver's token.
                    "url.full": str(url.with_query(None).with_fragment(None)),
                    "server.address": url.host or "",
                    "server.port": url.port or 443,
                }
            )
            if number > 1:
                span.set_attribute("http.request.resend_count", number - 1)
            try:
                rules = self._rules if dispatch.legacy else self._endpoint_rules
                vetted = await vet_url(url, rules, self._resolver)
            except WebhookUrlForbidden as exc:
                span.set_status(Status(StatusCode.ERROR, exc.code))
                span.set_attribute("error.type", exc.code)
                log.warning("webhook of %s refused: %s", url.host, exc.message)
                raise
            except WebhookUnresolved as exc:
                span.set_status(Status(StatusCode.ERROR, exc.code))
                span.set_attribute("error.type", exc.code)
                log.warning("webhook host %s (attempt %d): %s", url.host, number, exc.message)
                raise DeliveryRetriable(exc.message) from exc
            headers = _headers(dispatch, timestamp=int(self._wall_clock()))
            propagate.inject(headers)  # the receiver's server span joins the trace
            try:
                async with (
                    pinned_session(vetted, timeout=self._timeout, ssl_context=self._ssl_context) as http,
                    http.post(vetted.url, data=dispatch.body, headers=headers, allow_redirects=False) as response,
                ):
                    status = response.status  # the body is never read; leaving the block closes the connection
            except (aiohttp.ClientError, TimeoutError) as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                log.warning("POST to %s (attempt %d) failed: %s", url.host, number, type(exc).__name__)
                raise DeliveryRetriable(type(exc).__name__) from exc
            span.set_attribute("http.response.status_code", status)
            if 200 <= status < 300:
                return
            span.set_status(Status(StatusCode.ERROR, str(status)))
            span.set_attribute("error.type", str(status))
            if status >= 500 or status in _RETRIABLE_STATUS:
                log.warning("POST to %s (attempt %d) answered %d", url.host, number, status)
                raise DeliveryRetriable(f"HTTP {status}")
            raise DeliveryRejected(f"HTTP {status}: the receiver refused the delivery")


def _headers(dispatch: Dispatch, *, timestamp: int) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "vidgen-notifier/1",
        **standard_headers(dispatch.message_id, timestamp, dispatch.body, dispatch.secrets),
    }
    if dispatch.legacy:  # deprecated: operator webhooks keep the old scheme for one more release
        headers[SIGNATURE_HEADER] = sign(dispatch.body, *dispatch.secrets, timestamp=timestamp)
        headers[EVENT_HEADER] = dispatch.event
        headers[DELIVERY_HEADER] = dispatch.message_id
    return headers
