"""The ACL table (`consumer.kafka.topic_access`) against the code that uses the topics, the deploy files, and the
documentation generated from it. What each component really sends a broker is checked in
tests/integration/test_topic_acls.py."""

from __future__ import annotations

import yaml

from consumer.api.view.follower import view_topics
from consumer.dev.acl_docs import ACLS_END, ACLS_START, DEFAULT_PATH, acl_markdown, default_access
from consumer.kafka.clients import make_consumer, topic_configs, worker_topics
from consumer.kafka.topic_access import ComponentAccess, prefixed_grant_leaks
from consumer.settings import Settings
from tests.support import REPO

DEFAULTS = Settings.model_construct()
ACCESS = {row.name: row for row in default_access()}
PRODUCERS = ("Job API", "Product hook", "Operator: submit and watch", "Operator: cancel")


def test_the_documented_acl_table_is_current() -> None:
    text = (REPO / DEFAULT_PATH).read_text(encoding="utf-8")
    start, end = text.index(ACLS_START) + len(ACLS_START), text.index(ACLS_END)
    assert text[start:end].strip() == acl_markdown(default_access()).strip(), "topics changed: run `make docs`"


async def test_a_worker_reads_what_it_subscribes_and_follows_and_creates_what_it_uses() -> None:
    for name, settings in (("GPU worker pool", DEFAULTS), ("Template worker pool", DEFAULTS.template_pool())):
        row = ACCESS[name]
        consumer = make_consumer(settings, listener=None)  # never started: only its subscription is read
        try:
            assert consumer.subscription() <= set(row.reads), name
        finally:
            await consumer.stop()
        assert {settings.control_topic, settings.attempts_topic} <= set(row.reads), name  # followed, no group
        assert set(topic_configs(settings)) - {settings.webhooks_topic} <= set(row.reads), name
        assert set(row.creates) == set(worker_topics(settings)), name
        assert row.groups == (settings.consumer_group,), name


def test_the_job_apis_row_is_its_view_and_its_lanes() -> None:
    row = ACCESS["Job API"]
    assert set(row.reads) == {*view_topics(DEFAULTS), DEFAULTS.webhooks_topic}
    assert set(row.writes) == {
        DEFAULTS.requests_topic,
        DEFAULTS.bulk_topic,
        DEFAULTS.template_topic,
        DEFAULTS.control_topic,
        DEFAULTS.webhooks_topic,
    }
    assert set(row.creates) == set(worker_topics(DEFAULTS)) | set(view_topics(DEFAULTS)) | {DEFAULTS.webhooks_topic}


def test_no_upstream_producer_writes_an_internal_topic() -> None:
    internal = {
        DEFAULTS.attempts_topic,
        DEFAULTS.retry_topic,
        DEFAULTS.dlq_topic,
        DEFAULTS.results_topic,
        DEFAULTS.progress_topic,
        DEFAULTS.template_pool().retry_topic,
    }
    for name in PRODUCERS:
        assert not set(ACCESS[name].writes) & internal, name


def test_the_pools_never_read_each_others_requests() -> None:
    gpu, template = ACCESS["GPU worker pool"], ACCESS["Template worker pool"]
    gpu_inputs = {DEFAULTS.requests_topic, DEFAULTS.bulk_topic, DEFAULTS.retry_topic}
    assert not set(template.reads) & gpu_inputs
    assert not set(gpu.reads) & set(template.reads) - {DEFAULTS.control_topic, DEFAULTS.attempts_topic}
    assert set(gpu.groups).isdisjoint(template.groups)


def test_a_prefixed_grant_on_the_requests_topic_would_hand_producers_the_internal_topics() -> None:
    leaks = prefixed_grant_leaks(default_access())
    for name in PRODUCERS[:3]:
        leaked = set(leaks[name][DEFAULTS.requests_topic])
        assert {DEFAULTS.attempts_topic, DEFAULTS.retry_topic, DEFAULTS.dlq_topic} <= leaked, name
    assert "Operator: cancel" not in leaks  # video.control is no one's prefix


def test_the_keda_row_is_what_the_scaled_objects_read() -> None:
    base = REPO / "deploy" / "k8s" / "base"
    triggers = [
        trigger["metadata"]
        for name in ("scaledobject.yaml", "template-scaledobject.yaml")
        for trigger in yaml.safe_load((base / name).read_text(encoding="utf-8"))["spec"]["triggers"]
        if trigger["type"] == "kafka"
    ]
    row: ComponentAccess = ACCESS["KEDA autoscaler"]
    assert {trigger["topic"] for trigger in triggers} <= set(row.watches)
    assert {trigger["consumerGroup"] for trigger in triggers} == set(row.watched_groups)
