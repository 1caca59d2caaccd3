"""A worker's pool follows from its model (`consumer.settings.pools`): `VIDGEN_MODEL=template` alone gives the template
pool's topics and group; topic or group settings that contradict the model are refused with the variables named."""

from __future__ import annotations

import pytest

from consumer.errors import VidgenError
from consumer.settings import Settings
from consumer.settings.pools import worker_settings

DEFAULTS = Settings.model_construct()


def _from_env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name in list(Settings.model_fields):
        monkeypatch.delenv(f"VIDGEN_{name.upper()}", raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_model_template_alone_reads_the_template_pools_topics_in_its_group(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = worker_settings(_from_env(monkeypatch, VIDGEN_MODEL="template"))
    assert (worker.requests_topic, worker.bulk_topic, worker.retry_topic, worker.consumer_group) == (
        "video.requests.template",
        "video.requests.template.bulk",
        "video.requests.template.retry",
        "video-renderers-template",
    )
    # What stays shared: results, DLQ, control and the crash guard's topic.
    assert (worker.results_topic, worker.dlq_topic, worker.control_topic, worker.attempts_topic) == (
        DEFAULTS.results_topic,
        DEFAULTS.dlq_topic,
        DEFAULTS.control_topic,
        DEFAULTS.attempts_topic,
    )


def test_a_renamed_template_topic_renames_the_pool_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = worker_settings(_from_env(monkeypatch, VIDGEN_MODEL="template", VIDGEN_TEMPLATE_TOPIC="acme.degraded"))
    assert (worker.requests_topic, worker.bulk_topic, worker.retry_topic) == (
        "acme.degraded",
        "acme.degraded.bulk",
        "acme.degraded.retry",
    )


def test_template_pool_settings_and_the_deploy_files_values_are_accepted_unchanged() -> None:
    pool = DEFAULTS.template_pool()
    assert worker_settings(pool) == pool
    explicit = Settings(
        model="template",
        requests_topic="video.requests.template",
        retry_topic="video.requests.template.retry",
        bulk_topic="video.requests.template.bulk",
        consumer_group="video-renderers-template",
    )
    assert worker_settings(explicit) == explicit


def test_a_model_worker_keeps_the_gpu_pools_names(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = _from_env(monkeypatch, VIDGEN_MODEL="tiny")
    assert worker_settings(worker) == worker


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"VIDGEN_MODEL": "template", "VIDGEN_REQUESTS_TOPIC": "video.requests"}, "VIDGEN_REQUESTS_TOPIC"),
        ({"VIDGEN_MODEL": "template", "VIDGEN_RETRY_TOPIC": "video.requests.retry"}, "VIDGEN_RETRY_TOPIC"),
        ({"VIDGEN_MODEL": "template", "VIDGEN_BULK_TOPIC": "video.requests.bulk"}, "VIDGEN_BULK_TOPIC"),
        ({"VIDGEN_MODEL": "template", "VIDGEN_CONSUMER_GROUP": "video-renderers"}, "VIDGEN_CONSUMER_GROUP"),
        ({"VIDGEN_MODEL": "tiny", "VIDGEN_REQUESTS_TOPIC": "video.requests.template"}, "VIDGEN_REQUESTS_TOPIC"),
        ({"VIDGEN_MODEL": "tiny", "VIDGEN_RETRY_TOPIC": "video.requests.template.retry"}, "VIDGEN_RETRY_TOPIC"),
        ({"VIDGEN_MODEL": "standin", "VIDGEN_CONSUMER_GROUP": "video-renderers-template"}, "VIDGEN_CONSUMER_GROUP"),
    ],
)
def test_settings_that_contradict_the_model_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    with pytest.raises(VidgenError) as refused:
        worker_settings(_from_env(monkeypatch, **variables))
    assert refused.value.code == "pool_mismatch"
    assert named in refused.value.message and "VIDGEN_MODEL" in refused.value.message
    assert "\n" not in refused.value.message
