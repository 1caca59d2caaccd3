"""The notifier's Prometheus metrics (served at /metrics beside /healthz), on a registry of its own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["NotifierMetrics"]


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.results = Counter(
            "vidgen_notifier_results",
            "Deliveries handled, by outcome: delivered, duplicate (already delivered or under way), no_webhook (a "
            "result whose tenant has neither an operator webhook nor an endpoint for it), the notifier DLQ's error "
            "code (invalid_result, webhook_url_forbidden, endpoint_unavailable, delivery_failed, "
            "webhook_secret_unreadable, ...), and for video.progress: progress_delivered, progress_dropped, "
            "invalid_progress.",
            ["outcome"],
            registry=self.registry,
        )
        self.in_flight = Gauge("vidgen_notifier_in_flight", "Results being delivered.", registry=self.registry)
        self.open_breakers = Gauge(
            "vidgen_notifier_open_breakers",
            "Destinations (a tenant's operator webhook, or a tenant endpoint) whose circuit breaker is open.",
            registry=self.registry,
        )

    def watch(self, *, in_flight: Callable[[], int], open_breakers: Callable[[], int]) -> None:
        """Read both gauges from the running notifier at scrape time."""
        self.in_flight.set_function(in_flight)
        self.open_breakers.set_function(open_breakers)
