"""The second GPU pool (Wan) beside EasyAnimate, in compose and in deploy/k8s (rendered by the real `kubectl
kustomize`): its own model and public id, topics, consumer group, KEDA trigger and GPU request, and the job API's
registry routing its id to its topic."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumer.api.api_settings import ApiSettings
from consumer.settings import Settings
from tests.unit.deploy_files import (
    GPU_OVERLAYS,
    OVERLAYS,
    compose_services,
    config_data,
    effective_env,
    one_doc,
    render_overlay,
    requests_partitions,
    service_env,
    unknown_vidgen_vars,
)

WAN = "vidgen-wan"
POOL_NAMES = ("VIDGEN_REQUESTS_TOPIC", "VIDGEN_RETRY_TOPIC", "VIDGEN_BULK_TOPIC", "VIDGEN_CONSUMER_GROUP")


def _routes(pools_json: str, env: dict[str, str]) -> dict[str, str]:
    """Where the job API configured with `pools_json` sends each model id (interactive lane)."""
    settings = Settings.model_validate({"model_pools": json.loads(pools_json)})
    api = ApiSettings(id_key="k" * 32, keys_file="k", model_id=env.get("VIDGEN_API_MODEL_ID", "easyanimate-v5.1"))
    return {model.id: model.topic for model in api.models(settings)}


def _differs_from_the_default_pool(pool: dict[str, str], default: dict[str, str]) -> None:
    for name in POOL_NAMES:
        fallback = Settings.model_fields[name.removeprefix("VIDGEN_").lower()].default
        assert pool[name] != default.get(name, fallback), f"{name} is shared with the default pool"


def test_compose_runs_a_wan_pool_beside_easyanimate_in_the_cpu_and_gpu_profiles() -> None:
    services = compose_services()
    cpu, gpu = services["worker-wan-cpu"], services["worker-wan-gpu"]
    assert (cpu["profiles"], gpu["profiles"]) == (["cpu"], ["gpu"])
    assert service_env(cpu)["VIDGEN_MODEL"] == "tiny:wan"
    assert service_env(gpu)["VIDGEN_MODEL"].startswith("/models/Wan")
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in gpu["deploy"]["resources"]["reservations"][
        "devices"
    ]
    for pool in (cpu, gpu):
        env = service_env(pool)
        _differs_from_the_default_pool(env, service_env(services["worker-gpu"]))
        assert env["VIDGEN_MODEL_ID"] == "wan-2"
    script = " ".join(services["kafka-init"]["command"])
    for name in ("VIDGEN_REQUESTS_TOPIC", "VIDGEN_RETRY_TOPIC", "VIDGEN_BULK_TOPIC"):
        assert f" {service_env(cpu)[name]} " in f" {script} ".replace(";", " "), name
    api = service_env(services["api"])
    routes = _routes(api["VIDGEN_MODEL_POOLS"], api)
    assert routes["wan-2"] == service_env(cpu)["VIDGEN_REQUESTS_TOPIC"]
    assert routes["easyanimate-v5.1"] == "video.requests"


def _container(docs: list[dict[str, Any]], app: str) -> dict[str, Any]:
    [container] = one_doc(docs, "Deployment", app)["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_runs_a_wan_pool_with_its_own_topics_trigger_and_gpu(overlay: str) -> None:
    docs = render_overlay(overlay)
    container = _container(docs, WAN)
    env = effective_env(docs, container)
    _differs_from_the_default_pool(env, config_data(docs))
    assert env["VIDGEN_MODEL_ID"] == "wan-2"
    assert not unknown_vidgen_vars(env)
    api = effective_env(docs, _container(docs, "vidgen-api"))  # the shared config, then the API's own
    assert _routes(api["VIDGEN_MODEL_POOLS"], api)["wan-2"] == env["VIDGEN_REQUESTS_TOPIC"]
    labels = one_doc(docs, "Deployment", WAN)["spec"]["template"]["metadata"]["labels"]
    assert one_doc(docs, "Service", WAN)["spec"]["selector"].items() <= labels.items()
    assert one_doc(docs, "PodDisruptionBudget", WAN)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    if overlay not in GPU_OVERLAYS:
        assert (env["VIDGEN_MODEL"], env["VIDGEN_DEVICE"]) == ("tiny:wan", "cpu")
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        assert one_doc(docs, "Deployment", WAN)["spec"]["replicas"] == 1
        return
    assert env["VIDGEN_MODEL"].startswith("/models/Wan")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "replicas" not in one_doc(docs, "Deployment", WAN)["spec"], "KEDA owns the replica count"
    scaled = one_doc(docs, "ScaledObject", WAN)["spec"]
    assert scaled["scaleTargetRef"]["name"] == WAN
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= requests_partitions()
    lanes = {env["VIDGEN_REQUESTS_TOPIC"], env["VIDGEN_BULK_TOPIC"]}
    assert {trigger["metadata"]["topic"] for trigger in scaled["triggers"]} == lanes
    for trigger in scaled["triggers"]:
        metadata = trigger["metadata"]
        assert trigger["type"] == "kafka" and all(isinstance(value, str) for value in metadata.values())
        assert metadata["consumerGroup"] == env["VIDGEN_CONSUMER_GROUP"]
        assert metadata["bootstrapServers"] == env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"]
    monitor = one_doc(docs, "ServiceMonitor", WAN)["spec"]
    assert monitor["selector"]["matchLabels"].items() <= one_doc(docs, "Service", WAN)["metadata"]["labels"].items()
