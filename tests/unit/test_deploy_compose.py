"""Offline checks of the compose file, the Dockerfile, .dockerignore, Prometheus and Grafana. Nothing here needs a
network or a container engine: the compose file is validated against the compose spec bundled in check-jsonschema.
The kustomize tree is checked in tests/unit/test_deploy_k8s.py; what both share is in tests/unit/deploy_files.py."""

from __future__ import annotations

import functools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from consumer.kafka.clients import topic_configs
from consumer.settings import Settings
from consumer.supervisor import SupervisorOptions
from tests.unit.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    DOCKERIGNORE,
    GRAFANA,
    PROMETHEUS,
    TEMPLATE_POOL,
    TEMPLATE_SERVICE,
    compose_services,
    compose_workers,
    load_yaml,
    pool_names,
    requests_partitions,
    seconds,
    service_env,
    unknown_vidgen_vars,
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
    services = compose_services()
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
    services = compose_services()
    for name in ("kafka", "minio", "prometheus", "worker-cpu", "worker-gpu", "product-hook", "notifier", "api"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    assert "kafka-broker-api-versions.sh" in " ".join(services["kafka"]["healthcheck"]["test"])


def test_one_shot_services_create_every_topic_and_the_bucket() -> None:
    services = compose_services()
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
    bucket = {service_env(w)["VIDGEN_S3_BUCKET"] for w in compose_workers().values()}
    assert len(bucket) == 1
    assert f"local/{bucket.pop()}" in " ".join(services["minio-init"]["command"])
    assert requests_partitions() == Settings.model_fields["topic_partitions"].default


def test_the_control_and_attempts_topics_are_created_as_the_worker_would_create_them() -> None:
    script = " ".join(compose_services()["kafka-init"]["command"])
    created = {command.split()[1]: command for command in script.split("topics --create --if-not-exists ")[1:]}
    for topic, configs in topic_configs(Settings()).items():
        for name, value in configs.items():
            assert f"--config {name}={value}" in created[topic], (topic, name)


def test_worker_profiles() -> None:
    workers = {name: worker for name, worker in compose_workers().items() if name != TEMPLATE_SERVICE}
    assert {tuple(w["profiles"]) for w in workers.values()} == {("cpu",), ("gpu",), ("gpu-node",)}
    for name, worker in workers.items():
        env = service_env(worker)
        assert env["VIDGEN_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["VIDGEN_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318", name
        assert env["VIDGEN_KAFKA_ENABLE_IDEMPOTENCE"] == "true", name
        assert worker["build"]["dockerfile"] == "deploy/Dockerfile", name
        grace = float(env.get("VIDGEN_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default))
        assert seconds(worker["stop_grace_period"]) > grace, f"{name}: stop_grace_period <= shutdown grace"

    cpu = workers["worker-cpu"]
    assert service_env(cpu)["VIDGEN_MODEL"] == "tiny"
    assert cpu["build"]["args"]["TORCH_VARIANT"] == "cpu"

    gpu = workers["worker-gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in devices
    assert service_env(gpu)["VIDGEN_MODEL"].startswith("/models/")
    [models] = [v for v in gpu["volumes"] if isinstance(v, dict) and v["target"] == "/models"]
    assert models["read_only"] is True

    node = workers["worker-gpu-node"]  # every GPU of the host, one supervised worker process each
    assert node["command"] == ["vidgen", "run", "--gpus", "all"]
    assert {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]} in node["deploy"]["resources"]["reservations"][
        "devices"
    ]
    assert service_env(node) == service_env(gpu)
    supervisor_grace = float(service_env(node)["VIDGEN_SHUTDOWN_GRACE_S"]) + SupervisorOptions().drain_margin_s
    assert seconds(node["stop_grace_period"]) > supervisor_grace


def test_compose_runs_the_template_pool_in_every_profile() -> None:
    """A CPU worker with the template renderer, on topics and a group of its own, whatever profile is up."""
    template = compose_services()[TEMPLATE_SERVICE]
    gpu = service_env(compose_services()["worker-gpu"])
    env = service_env(template)
    assert "profiles" not in template
    assert (env["VIDGEN_MODEL"], env["VIDGEN_DEVICE"]) == ("template", "cpu")
    assert "deploy" not in template and "volumes" not in template  # no GPU, no model
    assert template["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert pool_names(env) == pool_names(TEMPLATE_POOL.as_environment())  # as Settings.template_pool names them
    for name in ("VIDGEN_REQUESTS_TOPIC", "VIDGEN_RETRY_TOPIC", "VIDGEN_BULK_TOPIC", "VIDGEN_CONSUMER_GROUP"):
        default = Settings.model_fields[name.removeprefix("VIDGEN_").lower()].default
        assert env[name] != gpu.get(name, default), f"{name} is shared with the GPU pool"
    for name in ("VIDGEN_KAFKA_BOOTSTRAP_SERVERS", "VIDGEN_S3_ENDPOINT_URL", "VIDGEN_S3_BUCKET"):
        assert env.get(name) == gpu.get(name), name
    assert env.get("VIDGEN_RESULTS_TOPIC") == gpu.get("VIDGEN_RESULTS_TOPIC")  # one results topic for both pools
    assert seconds(template["stop_grace_period"]) > float(env["VIDGEN_SHUTDOWN_GRACE_S"])
    assert template["healthcheck"]["test"][0] == "CMD"


def test_compose_build_args_exist_in_the_dockerfile() -> None:
    declared = {args.split("=")[0] for instr, args in _dockerfile() if instr == "ARG"}
    for name, service in compose_services().items():
        build = service.get("build")
        if isinstance(build, dict):
            assert set(build.get("args", {})) <= declared, name


def test_compose_vidgen_variables_are_settings_fields() -> None:
    for name, service in compose_services().items():
        assert not unknown_vidgen_vars(service_env(service)), f"{name} sets variables Settings does not read"


def test_prometheus_scrapes_worker_hook_and_notifier() -> None:
    config = load_yaml(PROMETHEUS)
    targets: set[str] = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.update(static["targets"])
        for sd in job.get("dns_sd_configs", []):
            targets.update(f"{name}:{sd['port']}" for name in sd["names"])
    for name, worker in compose_workers().items():
        aliases = worker["networks"]["default"]["aliases"]
        port = service_env(worker)["VIDGEN_HTTP_PORT"]
        assert any(f"{alias}:{port}" in targets for alias in aliases), f"{name} is not scraped"
    assert {"product-hook:8081", "notifier:8082", "api:8081"} <= targets  # the API's operator port
    prometheus = compose_services()["prometheus"]
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
    assert not unknown_vidgen_vars(re.findall(r"\b(VIDGEN_\w+)=", env))


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
    grafana = compose_services()["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "vidgen.yml")["providers"]
    assert {p["options"]["path"] for p in providers} <= {
        target for source, target in mounts.items() if source == "./deploy/grafana/dashboards"
    }
    home = service_env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in {p.name for p in _dashboards()}
    [datasource] = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
