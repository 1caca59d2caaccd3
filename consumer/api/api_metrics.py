"""Prometheus metrics of one API process, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from consumer.http_server.request_metrics import HttpMetrics

__all__ = ["ApiMetrics"]


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http = HttpMetrics("vidgen_api", r)
        self.submitted = Counter("vidgen_api_jobs_submitted", "Jobs published to the requests topic.", registry=r)
        self.idempotent_replays = Counter(
            "vidgen_api_idempotent_replays",
            "Submissions answered with the job of an earlier Idempotency-Key.",
            registry=r,
        )
        self.cancels = Counter("vidgen_api_cancels", "Cancel commands published.", registry=r)
        self.shed = Counter("vidgen_api_shed", "Submissions refused with 503, by reason.", ["reason"], registry=r)
        self.degraded = Counter(
            "vidgen_api_degraded",
            "Submissions routed to the template pool, by reason: busy (else shed), pool_down.",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter("vidgen_api_rate_limited", "Calls refused with 429.", registry=r)
        self.auth_failures = Counter(
            "vidgen_api_auth_failures", "Calls refused with 401, by reason.", ["reason"], registry=r
        )
        self.uploads = Counter("vidgen_api_uploads", "Start images uploaded.", registry=r)
        self.view_records = Counter(
            "vidgen_api_view_records", "Records the view read, by topic.", ["topic"], registry=r
        )
        self.view_ignored = Counter(
            "vidgen_api_view_ignored",
            "Events that changed nothing: duplicate_result, conflicting_result (a different terminal result after "
            "the first), after_terminal, tenant_mismatch, unknown_job, unreadable.",
            ["reason"],
            registry=r,
        )
        self.event_streams = Gauge("vidgen_api_event_streams", "Open event streams.", registry=r)
