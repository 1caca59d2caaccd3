"""The embedded infrastructure every benchmark runs on: a tansu broker and a moto S3 server in their own processes,
settings naming fresh topics per run, and a description of the machine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from consumer.dev.embedded import free_port, isolated_settings, kafka_broker, wait_for_port
from consumer.settings import Settings

__all__ = [
    "REPO_ROOT",
    "Infra",
    "embedded_infra",
    "end_group",
    "machine_info",
    "new_run",
    "print_report",
    "spawn_api",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    s3_endpoint: str
    log_dir: Path


@contextlib.contextmanager
def embedded_infra() -> Iterator[Infra]:
    """A tansu broker and a moto S3 server, each in its own process on a loopback port (moto in a separate
    process so its request handling does not share the benchmark's GIL)."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # moto accepts any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with tempfile.TemporaryDirectory(prefix="vidgen-bench-") as tmp:
        log_dir = Path(tmp)
        with kafka_broker(log_path=log_dir / "tansu.log") as bootstrap, _moto_process(log_dir) as endpoint:
            yield Infra(bootstrap=bootstrap, s3_endpoint=endpoint, log_dir=log_dir)


@contextlib.contextmanager
def _moto_process(log_dir: Path) -> Iterator[str]:
    port = free_port()
    with open(log_dir / "moto.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, timeout_s=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            end_group(process, grace_s=5)


def spawn_api(
    env: dict[str, str], log_path: Path, *, checkout: Path = REPO_ROOT, python: str = sys.executable
) -> subprocess.Popen[bytes]:
    """`python -m consumer api` of `checkout` (run from it, so its own code is imported) in a process group of its
    own, its output appended to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [python, "-m", "consumer", "api"],
            env=env,
            cwd=checkout,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def end_group(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s if grace_s > 0 else 10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group may outlive its leader
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def new_run(infra: Infra, label: str) -> Settings:
    """Settings naming fresh topics, group and bucket, so runs on one broker never see each other."""
    run = f"{label}-{uuid.uuid4().hex[:6]}"
    return isolated_settings(
        infra.bootstrap, infra.s3_endpoint, run, topic_partitions=8, worker_id=f"bench-client-{run}"
    )


def machine_info() -> dict[str, Any]:
    import platform

    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def print_report(report: dict[str, Any], output: Path | None) -> None:
    """A benchmark's JSON report on stdout, and in `output` when one is given."""
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
