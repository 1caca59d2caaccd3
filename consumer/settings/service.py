"""Settings of the worker process itself: probes, identity, logs and the per-GPU supervisor
(`ServiceSettings`)."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    """The process: probes, identity, logs, and the per-GPU supervisor."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    http_host: str = "0.0.0.0"  # noqa: S104 - the probes and Prometheus reach the worker from outside the pod
    http_port: int = Field(8080, ge=0, le=65_535, description="/healthz, /readyz and /metrics.")
    worker_id: str = Field(default_factory=_default_worker_id, description="Stamped on results; hostname-pid.")
    log_format: Literal["json", "text"] = Field("json", description="JSON lines, or text for a terminal.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    supervisor_child_port_base: int = Field(
        0,
        ge=0,
        le=65_535,
        description="`vidgen run --gpus`: worker k serves its probes on loopback port base + k, read only by the "
        "supervisor; 0: a free port picked at each start.",
    )
    supervisor_restart_backoff_s: float = Field(
        1.0,
        gt=0,
        description="`vidgen run --gpus`: wait before restarting a worker that died; doubles (up to 30 s) while it "
        "keeps dying within a minute of starting.",
    )
    supervisor_startup_attempts: int = Field(
        3,
        ge=1,
        description="`vidgen run --gpus`: a worker that dies this many times in a row before it is ever ready stops "
        "the supervisor (exit 1).",
    )
