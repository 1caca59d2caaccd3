"""The pure core is pure and the layers point one way, checked on what Python actually imports.

Each group of modules is imported in a fresh interpreter, which then reports every module loaded, directly or
transitively. The pure core (`consumer/core/`, memory estimates, admission, modes and profiles, `schemas/`) must load
no Kafka, S3, GPU or image library; `schemas/` must load nothing of `consumer/`; `memory/` must not load `render/`.
And only the entry points configure logging and tracing (a text check of the calls). The unit tier itself loads no
torch but in the test modules that declare it (`pytestmark = pytest.mark.torch`), so `make unit` stays fast.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IO_LIBRARIES = ("aiokafka", "aioboto3", "aiobotocore", "botocore", "torch", "diffusers", "transformers", "PIL")
PURE = sorted(
    [
        *(f"consumer.core.{path.stem}" for path in (REPO / "consumer" / "core").glob("*.py")),
        "consumer.memory.admission",
        "consumer.memory.coefficients",
        "consumer.memory.estimate",
        "consumer.memory.modes",
        "consumer.memory.profile",
        "consumer.memory.template_estimate",
        # The job API's rules: job state from events, shedding and the wait estimate, the queue counts, ids, JWT
        # claim checks, pagination, content links.
        "consumer.api.auth.jwt_claims",
        "consumer.api.view.pages",
        "consumer.api.submission.job_ids",
        "consumer.api.view.job_state",
        "consumer.api.auth.link_signing",
        "consumer.api.submission.shedding",
        "consumer.api.submission.wait_estimate",
        "consumer.api.view.queue_counts",
    ]
)
SCHEMAS = sorted(f"schemas.{path.stem}" for path in (REPO / "schemas").glob("*.py") if path.stem != "__main__")


def _loaded_by(modules: list[str]) -> set[str]:
    """Top-level and package names of every module importing `modules` loads, in a fresh interpreter."""
    probe = "; ".join(
        [
            "import importlib, json, sys",
            f"[importlib.import_module(name) for name in {modules!r}]",
            "print(json.dumps(sorted(sys.modules)))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout))


def _offenders(loaded: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(name for name in loaded if name.split(".")[0] in roots)


@pytest.fixture(scope="module")
def pure_loads() -> set[str]:
    return _loaded_by(PURE)


def test_the_pure_core_imports_no_io_library(pure_loads: set[str]) -> None:
    assert "consumer.core.intake" in pure_loads  # the probe did import what it checks
    assert _offenders(pure_loads, IO_LIBRARIES) == []


def test_memory_estimates_do_not_import_the_renderer(pure_loads: set[str]) -> None:
    assert sorted(name for name in pure_loads if name.startswith("consumer.render")) == []


def test_schemas_import_nothing_of_the_worker_and_no_io_library() -> None:
    loaded = _loaded_by(SCHEMAS)
    assert "schemas.events" in loaded
    assert _offenders(loaded, ("consumer", *IO_LIBRARIES)) == []


def test_the_unit_tier_loads_torch_only_where_a_module_declares_it() -> None:
    """The shared conftest, tests/support.py and every unit module without the `torch` marker import no torch,
    diffusers or transformers (seconds of start-up each): renderers and tiny pipelines are imported where used."""
    unit = REPO / "tests" / "unit"
    undeclared = [
        f"tests.unit.{path.stem}"
        for path in sorted(unit.glob("test_*.py"))
        if "pytestmark = pytest.mark.torch" not in path.read_text(encoding="utf-8")
    ]
    loaded = _loaded_by(["tests.conftest", "tests.support", *undeclared])
    assert "tests.unit.test_consume_loop" in loaded  # the probe did import what it checks
    assert _offenders(loaded, ("torch", "diffusers", "transformers")) == []


def test_only_entry_points_configure_logging_and_tracing() -> None:
    """Library modules ask for loggers and tracers; configuring them is the job of an entry point."""
    entry_points = {"consumer/cli.py", "consumer/api/commands.py"}
    configures = re.compile(
        r"(?<!def )\b(configure_logging|basicConfig|set_tracer_provider|tracer_provider_from_env)\("
    )
    offenders = [
        path.relative_to(REPO).as_posix()
        for path in sorted((REPO / "consumer").rglob("*.py"))
        if path.relative_to(REPO).as_posix() not in entry_points and configures.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_import_contracts_check_the_same_purity() -> None:
    """`lint-imports` (`make lint`) checks the import graph against pyproject.toml's contracts; its pure-core contract
    covers every module checked here, against at least these libraries."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"][
        "contracts"
    ]
    pure = next(contract for contract in contracts if contract["id"] == "pure-core")
    sources = pure["source_modules"]
    uncovered = [name for name in PURE + SCHEMAS if not any(name == s or name.startswith(f"{s}.") for s in sources)]
    assert uncovered == []
    assert set(IO_LIBRARIES) <= set(pure["forbidden_modules"])
    schemas = next(contract for contract in contracts if contract["id"] == "schemas")
    assert schemas["forbidden_modules"] == ["consumer", "producer_examples"]
