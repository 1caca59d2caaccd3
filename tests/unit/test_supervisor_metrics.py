"""The node's /metrics page: the workers' own pages merged, every sample labelled with its worker."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.supervisor.node_metrics import ChildMetrics, merge_pages, render_page, supervisor_families
from consumer.telemetry.worker_metrics import Metrics


def _page(completed: int, inflight: int, render_s: float) -> str:
    metrics = Metrics()  # the worker's own registry, exactly as a child serves it
    metrics.jobs.labels(status="completed", error_code="").inc(completed)
    metrics.inflight.set(inflight)
    metrics.render_seconds.labels(resolution="sd", frames="5").observe(render_s)
    return generate_latest(metrics.registry).decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_pages_merge_into_one_family_per_name_with_worker_labels() -> None:
    pages = [({"worker": "0", "gpu": "0"}, _page(2, 1, 0.3)), ({"worker": "1", "gpu": "5"}, _page(3, 0, 40.0))]
    text = render_page(merge_pages(pages)).decode()

    type_lines = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(type_lines) == len(set(type_lines))  # each family once, its samples together
    samples = _samples(text)
    assert (
        samples[("vidgen_jobs_total", (("error_code", ""), ("gpu", "0"), ("status", "completed"), ("worker", "0")))]
        == 2
    )
    assert (
        samples[("vidgen_jobs_total", (("error_code", ""), ("gpu", "5"), ("status", "completed"), ("worker", "1")))]
        == 3
    )
    assert samples[("vidgen_inflight_jobs", (("gpu", "0"), ("worker", "0")))] == 1
    assert samples[("vidgen_inflight_jobs", (("gpu", "5"), ("worker", "1")))] == 0
    bucket = ("frames", "5"), ("gpu", "5"), ("le", "30.0"), ("resolution", "sd"), ("worker", "1")
    assert samples[("vidgen_render_seconds_bucket", bucket)] == 0  # 40 s is past the 30 s bucket...
    assert samples[("vidgen_render_seconds_bucket", (*bucket[:2], ("le", "60.0"), *bucket[3:]))] == 1  # ...in 60 s
    assert (
        samples[("vidgen_render_seconds_count", (("frames", "5"), ("gpu", "0"), ("resolution", "sd"), ("worker", "0")))]
        == 1
    )


def test_the_supervisors_labels_win_over_a_childs_own() -> None:
    page = '# HELP x_total A counter.\n# TYPE x_total counter\nx_total{worker="evil"} 4.0\n'
    assert _samples(render_page(merge_pages([({"worker": "0"}, page)])).decode()) == {
        ("x_total", (("worker", "0"),)): 4.0
    }


def test_the_supervisor_adds_readiness_and_restarts_per_child() -> None:
    children = [
        ChildMetrics({"worker": "0"}, ready=True, restarts=0),
        ChildMetrics({"worker": "1"}, ready=False, restarts=2),
    ]
    samples = _samples(render_page(supervisor_families(children)).decode())
    assert samples[("vidgen_supervisor_child_ready", (("worker", "0"),))] == 1
    assert samples[("vidgen_supervisor_child_ready", (("worker", "1"),))] == 0
    assert samples[("vidgen_supervisor_child_restarts_total", (("worker", "1"),))] == 2


def test_no_pages_no_families() -> None:
    assert merge_pages([]) == []
