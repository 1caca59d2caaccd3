"""The one configuration object, read from `VIDGEN_*` environment variables once at start-up."""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

__all__ = ["ConfigurationError", "Settings", "describe_config_error", "environment_of"]

ConfigurationError = (ValidationError, SettingsError)
"""What building a settings object from the environment raises: a rule broken, or a value that is not valid JSON."""


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every knob of the worker. Built once in the entry point and passed down; never read elsewhere."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    # Kafka
    kafka_bootstrap_servers: str = Field("localhost:9092", description="Comma-separated host:port list.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Use SASL_SSL with SASL, SSL for mutual TLS."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = Field(None, description="Never logged.")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle that signs the brokers' certificates.")
    kafka_ssl_certfile: str | None = Field(None, description="Client certificate for mutual TLS.")
    kafka_ssl_keyfile: str | None = Field(None, description="Private key of the client certificate.")
    kafka_enable_idempotence: bool = Field(
        True, description="Idempotent producer. Apache Kafka supports it; the embedded test broker does not."
    )
    consumer_group: str = Field("video-renderers", description="Consumer group of the workers.")
    group_instance_id: str | None = Field(None, description="Static membership id (rolling restarts).")
    requests_topic: str = "video.requests"
    bulk_topic: str = Field(
        "video.requests.bulk",
        description="Requests with `priority: bulk` (backfills, catalog imports): rendered while no interactive "
        "request waits, with at least `VIDGEN_BULK_MIN_SHARE` of the renders while both wait.",
    )
    results_topic: str = "video.results"
    dlq_topic: str = "video.requests.dlq"
    retry_topic: str = Field(
        "video.requests.retry",
        description="Requests whose in-process retries ran out, and requests their tenant's quota deferred, wait "
        "here for a later try.",
    )
    template_topic: str = Field(
        "video.requests.template",
        description="Requests topic of the template pool (workers with `VIDGEN_MODEL=template`), where the job API "
        "and the product hook route requests they degrade.",
    )
    progress_topic: str = Field("video.progress", description="Where progress events go when enabled.")
    progress_events: bool = Field(
        True, description="Publish `started` and `progress` events per request (the job API shows them)."
    )
    progress_interval_s: float = Field(2.0, ge=0, description="At most one progress event per request this often.")
    control_topic: str = Field(
        "video.control", description="Cancel commands (`VideoControl`, keyed by request id); the job API writes them."
    )
    control_retention_s: float = Field(
        86_400.0,
        gt=0,
        description="A cancel command applies to requests that arrive this long after it (also the control topic's "
        "`retention.ms` when the worker creates it).",
    )
    attempts_topic: str = Field(
        "video.requests.attempts",
        description="The crash guard's compacted topic: per request record (keyed by its position), how many workers "
        "started it without answering it.",
    )
    max_worker_crashes: int = Field(
        2,
        ge=1,
        description="A request whose earlier starts took down this many workers is answered `worker_crashed` (and "
        "dead-lettered) instead of being started again.",
    )
    create_topics: bool = Field(True, description="Create missing topics at start-up.")
    topic_partitions: int = Field(8, ge=1, description="Partitions of topics created at start-up.")
    topic_replication_factor: int = Field(1, ge=1)
    session_timeout_ms: int = Field(30_000, ge=1_000, description="A member silent this long is evicted.")
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    rebalance_grace_s: float = Field(
        30.0, ge=0, description="On revocation, in-flight jobs get this long to finish and commit, else are abandoned."
    )
    max_poll_interval_ms: int = Field(
        300_000, ge=1_000, description="Renders may take longer: the worker keeps polling with partitions paused."
    )
    max_record_bytes: int = Field(1_048_576, ge=1_024, description="Records larger than this go to the DLQ unparsed.")
    max_event_bytes: int = Field(
        1_048_576,
        ge=262_144,
        description="Largest record the worker publishes, counted as the producer does (key, value, headers, batch "
        "overhead); at most the brokers' `message.max.bytes`. A DLQ copy that would be larger carries a stub instead.",
    )

    # Retries of transient failures (storage, image download, render crash, broker)
    retry_attempts: int = Field(3, ge=1, description="Attempts in process before a request moves to the retry topic.")
    retry_backoff_s: float = Field(1.0, gt=0, description="First backoff; doubles per attempt, with jitter.")
    retry_backoff_max_s: float = Field(30.0, gt=0)
    retry_deadline_s: float = Field(120.0, gt=0, description="Total time in-process retries of one delivery may take.")
    retry_topic_delay_s: float = Field(30.0, ge=0, description="Not-before delay of a request sent to the retry topic.")
    retry_topic_rounds: int = Field(
        2, ge=0, description="Trips through the retry topic before the request fails for good (and is dead-lettered)."
    )
    max_inflight_jobs: int = Field(
        2,
        ge=1,
        description="Jobs before their render ends (start image, memory admission, render): one renders while the "
        "next is prepared. Bounded further by free device memory.",
    )
    max_finishing_jobs: int = Field(
        4,
        ge=0,
        description="Jobs past their render (encode, upload, publish) at once; new jobs start only while fewer are. "
        "0: a job keeps its render slot until it is answered (the sequential design).",
    )
    max_pending_jobs: int = Field(
        16,
        ge=1,
        description="Fetched requests waiting for a slot; while full, partitions are paused. Requests deferred by "
        "their tenant's quota never keep it full: they move to the retry topic.",
    )
    bulk_min_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="While interactive and bulk requests both wait, at least this share of the renders a worker starts "
        "is bulk (0.1: one in ten); 0: bulk waits as long as interactive requests keep coming.",
    )

    # Content policy and tenant quotas
    banned_terms: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated banned terms or phrases (`word*` matches a prefix); rejects `content_policy`."
    )
    banned_terms_file: str | None = Field(None, description="UTF-8 file of banned terms, one per line, `#` comments.")
    policy_check_negative_prompt: bool = Field(False, description="Also apply banned terms to negative_prompt.")
    tenant_max_inflight: int | None = Field(None, ge=1, description="Jobs of one tenant at once; unset: unlimited.")
    tenant_requests_per_minute: int | None = Field(
        None, ge=1, description="Token bucket per tenant (burst = the same number); unset: unlimited."
    )
    tenant_max_wait_s: float | None = Field(
        None, ge=0, description="A request deferred longer than this fails with `rate_limited`; unset: waits."
    )

    # Object storage
    s3_endpoint_url: str = Field("", description="S3-compatible endpoint; empty means AWS.")
    s3_region: str = "us-east-1"
    s3_bucket: str = "vidgen-videos"
    s3_create_bucket: bool = Field(False, description="Create the bucket at start-up if it is missing.")
    s3_key_prefix: str = Field("", description="Prefix of every object key the worker writes.")
    s3_image_buckets: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Shared buckets start images may come from, readable by every tenant; from the output bucket a "
        "request reads only its tenant's upload folder.",
    )
    presign_ttl_s: int = Field(3_600, ge=60, le=604_800, description="Lifetime of presigned URLs.")

    # Start images
    image_max_bytes: int = Field(20 * 1024 * 1024, ge=1_024, description="Largest start image download.")
    image_max_pixels: int = Field(40_000_000, ge=1, description="Largest decoded start image (bomb guard).")
    image_max_decoded_bytes: int = Field(
        160_000_000,
        ge=1,
        description="Largest decoded start image in bytes (pixels x bands x bytes per sample), checked before "
        "decoding.",
    )
    image_decode_memory_bytes: int = Field(
        768 * 1024 * 1024,
        ge=64 * 1024 * 1024,
        description="Memory one start-image decode may add; decoding runs in a child process that is stopped past "
        "it (`image_too_large`).",
    )
    image_decode_cpu_s: int = Field(
        5,
        ge=1,
        description="CPU seconds one start-image decode may use (`image_too_large` past them); its wall-clock limit "
        "is twice this plus 1 s.",
    )
    image_timeout_s: float = Field(20.0, gt=0, description="Read timeout of start-image downloads.")
    image_max_redirects: int = Field(3, ge=0, le=10)
    image_host_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="If set, https start images only from these hosts (`.example.com` covers subdomains)."
    )

    # Rendering
    model: str = Field(
        "tiny",
        description="`tiny`, a local diffusers folder of EasyAnimate V5.1 InP, a Hugging Face id, `template` (no "
        "model: a Ken Burns move over the start image or a title card, on a CPU; results say `degraded: true`), or "
        "`standin`.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="`auto`: CUDA when torch sees a GPU.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="`auto`: bfloat16 on CUDA, float32 on CPU."
    )
    render_timeout_s: float = Field(
        1_800.0, gt=0, description="A render running longer is stopped; also the cap of a request's own deadline."
    )
    torch_compile: bool = Field(False, description="torch.compile the transformer (GPU; pair with a warm-up).")
    torch_compile_backend: str = Field("inductor", description="torch.compile backend (`eager` only checks wiring).")
    step_cache_threshold: float = Field(
        0.0,
        ge=0,
        description="Step caching (TeaCache): skip the transformer on denoising steps whose accumulated input change "
        "stays under this; 0 = off. Upstream suggests 0.08-0.1 for V5.1-7B. Changes the output.",
    )
    fp8: bool = Field(
        False,
        description="FP8 matmuls (torchao float8 dynamic activations and weights, per row) in the transformer blocks. "
        "Needs a CUDA GPU of compute capability 8.9+ (Ada, Hopper), bfloat16 and the `fp8` extra. Changes the output.",
    )
    warmup: str = Field(
        "", description="`WxHxF`: render once at start-up (2 steps) so compilation and autotuning precede requests."
    )
    standin_render_s: float = Field(
        1.0, ge=0, description="Only with VIDGEN_MODEL=standin (benchmarks, fault tests): seconds each render holds."
    )
    memory_mode: Literal["auto", "resident", "vae_tiling", "model_offload", "sequential_offload"] = Field(
        "auto", description="`auto`: per request, the fastest mode that fits the device's total memory."
    )
    memory_margin_bytes: int = Field(1 << 30, ge=0, description="Device memory never planned for (CUDA context).")
    memory_margin_fraction: float = Field(
        0.05, ge=0, lt=1, description="Plus this share of the device (fragmentation)."
    )
    memory_probe: Literal["torch", "nvml"] = Field("torch", description="How free GPU memory is read.")
    cpu_memory_budget_bytes: int | None = Field(
        None,
        ge=1,
        description="On a CPU-only worker, admit renders against this budget. Unset: the memory limit (cgroup, else "
        "total memory) less what the worker holds once its model is loaded and less the memory start-image decodes "
        "may take beside a render.",
    )
    cgroup_root: str = Field("/sys/fs/cgroup", description="Where cgroups are mounted (the CPU memory budget's limit).")
    oom_downgrade: bool = Field(True, description="On CUDA out-of-memory, retry once in a more frugal memory mode.")
    poster_format: Literal["jpeg", "webp"] = Field("jpeg", description="Poster image (first frame) format.")

    # Service
    http_host: str = "0.0.0.0"  # noqa: S104 - the probes and Prometheus reach the worker from outside the pod
    http_port: int = Field(8080, ge=0, le=65_535, description="/healthz, /readyz and /metrics.")
    worker_id: str = Field(default_factory=_default_worker_id, description="Stamped on results; hostname-pid.")
    log_format: Literal["json", "text"] = Field("json", description="JSON lines, or text for a terminal.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace_s: float = Field(60.0, ge=0, description="Time an in-flight job gets to finish on SIGTERM.")
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

    def template_pool(self) -> Settings:
        """The settings of a template worker beside this GPU pool: `VIDGEN_MODEL=template` on CPU, reading the
        template topic, with a consumer group, retry and bulk topic of its own (shared ones would hand its retries
        to the GPU pool, and the GPU pool's bulk backlog to it); results, bucket and the rest the same. Compose and
        deploy/k8s name them the same way."""
        return self.model_copy(
            update={
                "model": "template",
                "device": "cpu",
                "requests_topic": self.template_topic,
                "retry_topic": f"{self.template_topic}.retry",
                "bulk_topic": f"{self.template_topic}.bulk",
                "consumer_group": f"{self.consumer_group}-template",
                "worker_id": f"{self.worker_id}-template",
            }
        )

    def as_environment(self) -> dict[str, str]:
        """The `VIDGEN_*` variables that rebuild these settings in another process (unset fields left out).
        Secrets are revealed here on purpose: a child worker needs them; never log the result."""
        return environment_of(self, "VIDGEN_")

    @field_validator("warmup")
    @classmethod
    def _warmup_size(cls, value: str) -> str:
        if value and not re.fullmatch(r"\d+x\d+x\d+", value):
            raise ValueError("warmup must look like 512x512x25 (width x height x frames)")
        return value

    @field_validator("s3_image_buckets", "image_host_allowlist", "banned_terms", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


def environment_of(settings: BaseSettings, prefix: str) -> dict[str, str]:
    """The environment variables (`prefix` + field name) that rebuild `settings` in another process; unset fields
    are left out and secrets revealed (never log the result)."""
    environment = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, dict):
            value = json.dumps(value)  # what pydantic-settings parses a dict field from
        environment[f"{prefix}{name.upper()}"] = str(value)
    return environment


def describe_config_error(error: ValidationError | SettingsError) -> str:
    """Where and why, one line each, never the input: it may hold a secret or a URL with a token."""
    if isinstance(error, SettingsError):  # a variable that is not valid JSON; the message names it, not its value
        return f"  {error}"
    return "\n".join(
        f"  {'.'.join(str(part) for part in item['loc']) or '(settings)'}: {item['msg']}"
        for item in error.errors(include_input=False, include_url=False)
    )
