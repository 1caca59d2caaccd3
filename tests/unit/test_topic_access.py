"""The ACL table (`consumer.kafka.topic_access`) against the code that uses the topics, the deploy files, and the
documentation rendered from it when the docs site is built. What each component really sends a broker is checked in
tests/integration/test_topic_acls.py."""

from __future__ import annotations

import re

import pytest
import yaml

from consumer.api.view.follower import view_topics
from consumer.dev.acl_docs import acl_markdown, default_access
from consumer.dev.reference_docs import generated_blocks, render_generated
from consumer.kafka.clients import make_consumer, topic_configs, worker_topics
from consumer.kafka.topic_access import ComponentAccess, prefixed_grant_leaks
from consumer.settings import Settings
from tests.support import REPO

DEFAULTS = Settings.model_construct()
ACCESS = {row.name: row for row in default_access()}
PRODUCERS = ("Job API", "Product hook", "Operator: submit and watch", "Operator: cancel")
SECURITY_PAGE = REPO / "docs" / "security" / "index.md"
ACL_BLOCK = ("acls", "consumer.dev.acl_docs.default_access")


def _names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def _rendered_acls() -> str:
    """The security page as the site shows it: its ACL block rendered from the code."""
    page = SECURITY_PAGE.read_text(encoding="utf-8")
    assert generated_blocks(page).count(ACL_BLOCK) == 1, "the security page renders the ACL table once"
    return render_generated(page)


def test_the_security_page_shows_every_components_row_as_the_code_says() -> None:
    rendered = _rendered_acls()
    assert acl_markdown(default_access()) in rendered
    for row in ACCESS.values():
        line = next(line for line in rendered.splitlines() if line.startswith(f"| {row.name}: `{row.command}` |"))
        principal, reads, writes, watches, groups, creates = line.strip("|").split(" | ")[1:]
        assert principal.strip() == f"`{row.principal}`", row.name
        assert (_names(reads), _names(writes), _names(watches)) == (set(row.reads), set(row.writes), set(row.watches))
        assert _names(groups) == {*row.groups, *row.watched_groups}, row.name
        assert _names(creates) == set(row.creates), row.name


def test_the_security_pages_kafka_acls_commands_grant_each_row_literally_and_nothing_more() -> None:
    rendered = _rendered_acls()
    script = rendered[rendered.index("```bash\n# GPU worker pool") :]
    script = script[: script.index("```", 3)]
    assert "prefixed" not in script
    granted: dict[tuple[str, str], set[str]] = {}
    for section in script.split("\n# ")[1:]:
        name = section.split(" (", 1)[0]
        for principal, pattern, operation, resources in re.findall(
            r"--allow-principal (\S+) \\\n +--resource-pattern-type (\w+) --operation (\w+) \\\n +(.+)", section
        ):
            assert (principal, pattern) == (ACCESS[name].principal, "literal"), name
            granted[name, operation] = set(re.findall(r"--(?:topic|group) (\S+)", resources))
    expected = {
        (row.name, operation): set(topics) | set(groups)
        for row in ACCESS.values()
        for operation, topics, groups in (
            ("Read", row.reads, row.groups),
            ("Write", row.writes, ()),
            ("Describe", row.watches, row.watched_groups),
        )
        if topics or groups
    }
    assert granted == expected


def test_an_acls_block_naming_anything_but_the_components_access_fails_the_build() -> None:
    page = "<!-- generated:acls consumer.cli.build_parser -->\nshown on GitHub\n<!-- /generated -->\n"
    with pytest.raises(ValueError, match=r"cannot render acls consumer\.cli\.build_parser"):
        render_generated(page)


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
