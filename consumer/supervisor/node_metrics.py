"""One /metrics page for the node (pure): the children's pages merged, each sample labelled with its child.

Why a merge and not prometheus-client's multiprocess mode: the workers keep their own registry and their own
/metrics page unchanged (so one worker per pod needs no shared directory), gauges such as
`vidgen_inflight_jobs` or `vidgen_vram_free_bytes` stay per worker without choosing a multiprocess aggregation for
each, and a child killed with SIGKILL leaves no stale files behind: its series vanish until it is back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["ChildMetrics", "merge_pages", "render_page", "supervisor_families"]


@dataclass(frozen=True)
class ChildMetrics:
    """What the supervisor itself says about one child."""

    labels: Mapping[str, str]
    ready: bool
    restarts: int


def merge_pages(pages: Iterable[tuple[Mapping[str, str], str]]) -> list[Metric]:
    """Families of every page, one family per name (Prometheus wants a family's samples together), each sample
    carrying its page's labels (they win over a child's label of the same name)."""
    merged: dict[str, Metric] = {}
    for labels, text in pages:
        for family in text_string_to_metric_families(text):
            target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
            for sample in family.samples:
                target.samples.append(sample._replace(labels={**sample.labels, **labels}))
    return list(merged.values())


def supervisor_families(children: Sequence[ChildMetrics]) -> list[Metric]:
    ready = Metric("vidgen_supervisor_child_ready", "1 while the child worker answers ready, else 0.", "gauge")
    restarts = Metric("vidgen_supervisor_child_restarts", "Times the supervisor restarted the child worker.", "counter")
    for child in children:
        ready.add_sample(ready.name, dict(child.labels), 1.0 if child.ready else 0.0)
        restarts.add_sample(f"{restarts.name}_total", dict(child.labels), float(child.restarts))
    return [ready, restarts]


class _Families:
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render_page(families: Sequence[Metric]) -> bytes:
    """Prometheus text exposition of these families."""
    return generate_latest(_Families(families))
