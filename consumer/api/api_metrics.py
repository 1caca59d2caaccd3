"""Prometheus metrics of one API process, on a registry of its own."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from consumer.api.submission.body_budget import BodyBudget
from consumer.http_server.connection_guard import ConnectionGuard
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
        self.deletes = Counter(
            "vidgen_api_deletes",
            "Jobs deleted, by what became of their video: deleted, kept (another job shows it), none (it had none).",
            ["video"],
            registry=r,
        )
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
        self.stream_ends = Counter(
            "vidgen_api_stream_ends",
            "Event streams ended, by reason: job_ended, idle, credential_revoked, shutdown, client_left, job_gone.",
            ["reason"],
            registry=r,
        )
        self.concurrency_limited = Counter(
            "vidgen_api_concurrency_limited",
            "Calls refused with 429 for what the tenant holds at once, by reason: too_many_streams (event streams), "
            "too_many_connections (its share of the API's connections).",
            ["reason"],
            registry=r,
        )

    def watch_edge(self, guard: ConnectionGuard, budget: BodyBudget) -> None:
        """The tenant port's connection guard and the body budget, read at each scrape."""
        self.registry.register(_EdgeState(guard, budget))


class _EdgeState(Collector):
    def __init__(self, guard: ConnectionGuard, budget: BodyBudget) -> None:
        self._guard = guard
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "vidgen_api_connection_events",
            "Connections on the tenant port: accepted, refused (503: every one busy), evicted (the longest waiting "
            "for its client, at the bound), header_timeout, body_timeout (408).",
            labels=["event"],
        )
        counts = self._guard.counts
        for event in ("accepted", "refused", "evicted", "header_timeout", "body_timeout"):
            events.add_metric([event], counts.get(event, 0))
        yield events
        yield GaugeMetricFamily(
            "vidgen_api_open_connections", "Open connections on the tenant port.", value=self._guard.open_connections
        )
        budget = self._budget
        yield GaugeMetricFamily(
            "vidgen_api_body_bytes_reserved", "Bytes of request bodies in flight.", value=budget.reserved_bytes
        )
        yield GaugeMetricFamily(
            "vidgen_api_body_budget_bytes", "The body budget (VIDGEN_API_BODY_BUDGET_BYTES).", value=budget.limit_bytes
        )
        yield CounterMetricFamily(
            "vidgen_api_body_budget_refused", "Bodies refused with 503 body_budget_full.", value=budget.refused
        )
