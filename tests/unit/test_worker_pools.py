"""A worker's pool follows from its model (`consumer.settings.pools`): `VIDGEN_MODEL=template` alone gives the template
pool's topics and group; topic or group settings that contradict the model are refused with the variables named."""

from __future__ import annotations

import re

import pytest
import yaml

from consumer.errors import VidgenError
from consumer.settings import Settings
from consumer.settings.pools import worker_settings
from tests.support import REPO

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


def _deployed(env: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a worker builds them from a deploy file's environment (the variables Settings reads)."""
    return _from_env(monkeypatch, **{name: str(value) for name, value in env.items() if name.startswith("VIDGEN_")})


def test_the_deploy_files_template_workers_start_on_the_template_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose.yml's worker-template and deploy/k8s' template pod (its ConfigMap layered over the worker's)
    set the pool's names themselves: consistent, so accepted as they are."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    base = REPO / "deploy" / "k8s" / "base"
    k8s = {
        **yaml.safe_load((base / "configmap.yaml").read_text(encoding="utf-8"))["data"],
        **yaml.safe_load((base / "template-config.yaml").read_text(encoding="utf-8"))["data"],
    }
    for env in (compose["services"]["worker-template"]["environment"], k8s):
        deployed = _deployed(env, monkeypatch)
        assert deployed.model == "template"
        assert worker_settings(deployed) == deployed == deployed.model_copy(update=_POOL)


def test_a_template_pod_without_its_own_topics_would_refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The k8s worker ConfigMap names `video.requests` explicitly: a template pod that dropped its own ConfigMap's
    topics would read it, so it refuses instead of taking the GPU pool's jobs."""
    base = REPO / "deploy" / "k8s" / "base"
    gpu = yaml.safe_load((base / "configmap.yaml").read_text(encoding="utf-8"))["data"]
    with pytest.raises(
        VidgenError, match=re.escape("VIDGEN_REQUESTS_TOPIC=video.requests is not video.requests.template")
    ):
        worker_settings(_deployed({**gpu, "VIDGEN_MODEL": "template"}, monkeypatch))


_POOL = {
    "requests_topic": "video.requests.template",
    "bulk_topic": "video.requests.template.bulk",
    "retry_topic": "video.requests.template.retry",
    "consumer_group": "video-renderers-template",
}
