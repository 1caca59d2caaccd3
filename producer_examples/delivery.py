"""Signed webhook delivery with retries: one CLIENT span per attempt, traceparent in the HTTP headers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from producer_examples.ratelimit import Clock
from producer_examples.signing import SIGNATURE_HEADER, sign

__all__ = ["DELIVERY_HEADER", "EVENT_HEADER", "Outcome", "WebhookDelivery"]

log = logging.getLogger(__name__)

EVENT_HEADER = "X-Vidgen-Event"
DELIVERY_HEADER = "X-Vidgen-Delivery"  # stable across retries and redeliveries: receivers dedupe on it
_RETRIABLE_STATUS = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Outcome:
    code: Literal["delivered", "delivery_failed", "delivery_rejected"]
    attempts: int
    message: str = ""

    @property
    def delivered(self) -> bool:
        return self.code == "delivered"


class _Retriable(Exception):
    """Worth another attempt: a timeout, a connection error, 408/425/429 or 5xx."""


class _Rejected(Exception):
    """Not worth another attempt: the receiver answered with another 3xx/4xx."""


class WebhookDelivery:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        secret: str,
        tracer: Tracer,
        max_attempts: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        timeout_s: float,
        wall_clock: Clock = time.time,
    ) -> None:
        self._http = http
        self._secret = secret
        self._tracer = tracer
        self._max_attempts = max_attempts
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._wall_clock = wall_clock

    async def deliver(self, url: str, body: bytes, *, delivery_id: str, event: str = "video.result") -> Outcome:
        """POST `body` until a 2xx, a permanent refusal, or `max_attempts` attempts; never raises for HTTP."""
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            # Exponential backoff with jitter, so receivers coming back are not hit by every notifier at once.
            wait=wait_exponential(multiplier=self._backoff_initial_s, max=self._backoff_max_s)
            + wait_random(0, self._backoff_initial_s),
            retry=retry_if_exception_type(_Retriable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    await self._post(url, body, delivery_id=delivery_id, event=event, resend_count=attempts - 1)
        except _Retriable as exc:
            return Outcome("delivery_failed", attempts, f"gave up after {attempts} attempt(s): {exc}")
        except _Rejected as exc:
            return Outcome("delivery_rejected", attempts, str(exc))
        return Outcome("delivered", attempts)

    async def _post(self, url: str, body: bytes, *, delivery_id: str, event: str, resend_count: int) -> None:
        parts = urlsplit(url)
        with self._tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as span:
            span.set_attributes(
                {
                    "http.request.method": "POST",
                    # Scheme, host and path only: a query string may carry a receiver's token.
                    "url.full": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}",
                    "server.address": parts.hostname or "",
                    "server.port": parts.port or (443 if parts.scheme == "https" else 80),
                }
            )
            if resend_count:
                span.set_attribute("http.request.resend_count", resend_count)
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "vidgen-notifier/1",
                SIGNATURE_HEADER: sign(body, self._secret, timestamp=int(self._wall_clock())),
                EVENT_HEADER: event,
                DELIVERY_HEADER: delivery_id,
            }
            propagate.inject(headers)  # the receiver's server span joins the trace
            try:
                async with self._http.post(
                    url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
                ) as response:
                    status = response.status
                    await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__name__)
                log.warning("POST to %s (attempt %d) failed: %r", parts.hostname, resend_count + 1, exc)
                raise _Retriable(f"{type(exc).__name__}: {exc}") from exc
            span.set_attribute("http.response.status_code", status)
            if 200 <= status < 300:
                return
            span.set_status(Status(StatusCode.ERROR, str(status)))
            span.set_attribute("error.type", str(status))
            if status >= 500 or status in _RETRIABLE_STATUS:
                log.warning("POST to %s (attempt %d) answered %d", parts.hostname, resend_count + 1, status)
                raise _Retriable(f"HTTP {status}")
            raise _Rejected(f"HTTP {status}: the receiver refused the delivery")
