"""`VIDGEN_API_*`: the job API's own settings. Kafka, S3, topics and the worker's request limits come from the
shared `VIDGEN_*` Settings, so the API checks a request exactly as the worker will."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from consumer.api.auth.jwt_claims import ASYMMETRIC_ALGORITHMS, check_algorithms
from consumer.core.video_models import EASYANIMATE, TEMPLATE, TEMPLATE_MODEL_ID, ModelRegistry, VideoModel
from consumer.http_server.connection_guard import HttpLimits
from consumer.settings import TopicSettings, environment_of
from schemas.events import VideoRequest
from schemas.job_api import Fallback

__all__ = ["ApiSettings", "FormField", "KeysFileSettings"]

_ID_KEY_MIN = 32

FormField = Literal["width", "height", "num_frames", "num_inference_steps", "guidance_scale"]
"""The console's form fields whose starting values the API may suggest (`VIDGEN_API_CONSOLE_DEFAULTS`)."""


class KeysFileSettings(BaseSettings):
    """What `vidgen api-key create` needs: only where the keys file is."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_API_", extra="ignore", frozen=True, hide_input_in_errors=True)

    keys_file: str | None = Field(
        None,
        description="API keys: one `<sha256 hex of the key> <tenant>` per line (`vidgen api-key create` appends); "
        "reread when it changes.",
    )


class ApiSettings(KeysFileSettings):
    """Built once in the entry point, beside `Settings`, and passed down."""

    host: str = Field("0.0.0.0", description="Listen address.")  # noqa: S104 - callers reach it from outside the pod
    port: int = Field(8000, ge=0, le=65_535, description="Listen port of the API (tenants).")
    operator_port: int = Field(
        8081,
        ge=0,
        le=65_535,
        description="Listen port of /healthz, /readyz and /metrics (probes and Prometheus; not for tenants), with "
        "connections of its own so a tenant filling the API's never shuts the probes out.",
    )
    readiness_cache_s: float = Field(
        2.0, ge=1.0, description="/readyz answers from its last look at Kafka, S3 and the view for this long."
    )
    state_path: str = Field(
        "vidgen-api.sqlite3",
        description="SQLite file of the view (jobs and the topic offsets it has read); a fresh file rebuilds the "
        "view from the topics.",
    )
    retention_s: float = Field(
        7 * 86_400.0, gt=0, description="Jobs not updated for this long leave the view (404 afterwards)."
    )
    model_id: str = Field(
        "easyanimate-v5.1",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Public id of the GPU pool's model (EasyAnimate V5.1, whatever VIDGEN_MODEL names on the workers) "
        "in `GET /v1/models` and a job's `model`; the default of a request that names none.",
    )
    template_model: bool = Field(
        True,
        description="Also serve the template pool's renderer as the model `template` (requests go to "
        "VIDGEN_TEMPLATE_TOPIC). Turn off where no template pool runs.",
    )
    id_key: SecretStr = Field(
        description="HMAC key (at least 32 characters) that turns an `Idempotency-Key` into a job id; the same on "
        "every replica, never shared. A new key gives old idempotency keys new ids."
    )
    jwt_jwks_url: str | None = Field(None, description="JWKS URL of the identity provider that signs bearer tokens.")
    jwt_public_key_file: str | None = Field(
        None, description="PEM public key that signs bearer tokens (or a JWKS URL)."
    )
    jwt_issuer: str | None = Field(None, description="Required `iss` of tokens (required with JWT auth).")
    jwt_audience: str | None = Field(None, description="Required `aud` of tokens (required with JWT auth).")
    jwt_algorithms: Annotated[tuple[str, ...], NoDecode] = Field(
        tuple(sorted(ASYMMETRIC_ALGORITHMS)),
        description="Accepted signature algorithms, comma-separated; asymmetric only (`none` and HS* are refused).",
    )
    jwt_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on `exp` and `nbf`.")
    jwks_min_refresh_s: float = Field(
        60.0, ge=0, description="A token with an unknown `kid` refetches the JWKS at most this often."
    )
    jwks_timeout_s: float = Field(5.0, gt=0, description="Timeout of a JWKS fetch.")
    tenant_claim: str = Field("tenant_id", min_length=1, description="Token claim that names the tenant.")
    rate_per_s: float = Field(10.0, gt=0, description="API calls per second a tenant may sustain (token bucket).")
    burst: int = Field(20, ge=1, description="API calls a tenant may make at once.")
    max_body_bytes: int = Field(
        20 * 1024 * 1024 + 64 * 1024,
        ge=1_024,
        description="Largest multipart request body (413 past it, before it is read); room for an image. A JSON body "
        "may be at most VIDGEN_MAX_RECORD_BYTES.",
    )
    body_budget_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1_024,
        description="Request bodies in flight across all connections and tenants, in bytes (memory, and the image "
        "parts spooled to temporary files): each body reserves its Content-Length (or its cap) before it is read; "
        "past the budget, 503 body_budget_full with Retry-After. At least VIDGEN_API_MAX_BODY_BYTES.",
    )
    max_queued: int = Field(
        100,
        ge=1,
        description="The GPU pool is full with this many jobs queued (in the lanes a new job waits behind): then only "
        "tenants under their fair share (this / the tenants with jobs queued, at least 1) get in; others get 503.",
    )
    max_wait_s: float = Field(
        600.0,
        gt=0,
        description="The GPU pool is also full while its queued jobs take longer than this to start, first come "
        "first served (then its fair shares are what the active workers start in this time).",
    )
    tenant_max_queued: int = Field(
        25, ge=1, description="A tenant with this many jobs queued (in the lanes a new one waits behind) gets 503."
    )
    tenant_max_wait_s: float = Field(
        600.0,
        gt=0,
        description="A new job gets 503 when its own estimated wait is longer: its tenant's jobs queued ahead, one job "
        "per round of each other tenant with jobs queued (workers serve tenants round-robin), jobs rendering.",
    )
    tenant_max_jobs: int = Field(
        10_000,
        ge=1,
        description="Jobs the view keeps per tenant: past it, the tenant's terminal jobs least recently updated "
        "leave first (never a queued or rendering one). Bounds a tenant's share of the view file.",
    )
    default_service_s: float = Field(
        60.0, gt=0, description="Seconds a worker is assumed to spend on a job until renders have been seen."
    )
    worker_active_s: float = Field(
        300.0, gt=0, description="A worker counts as active this long after its last progress event or result."
    )
    fallback: Fallback = Field(
        "none",
        description="A new job's fallback when neither its body (`fallback`) nor its tenant "
        "(VIDGEN_API_TENANT_FALLBACK) names one: `template` sends it to the template pool "
        "(VIDGEN_TEMPLATE_TOPIC, `degraded`) when the GPU pool is busy or down; `none` refuses it with 503 when "
        "busy and queues it when down.",
    )
    tenant_fallback: dict[str, Fallback] = Field(
        {}, description="JSON map tenant -> `template` or `none`: that tenant's default fallback."
    )
    pool_down_s: float = Field(
        120.0,
        gt=0,
        description="The GPU pool counts as down when jobs are queued for it and no GPU worker has published progress "
        "or a result for this long (nor since the oldest queued job arrived).",
    )
    publish_timeout_s: float = Field(10.0, gt=0, description="How long a submission waits for Kafka's ack (503).")
    sse_keepalive_s: float = Field(15.0, gt=0, description="Comment line sent on an idle event stream this often.")
    stream_idle_s: float = Field(
        300.0, gt=0, description="An event stream whose job has not changed for this long ends (clients reconnect)."
    )
    max_streams_per_tenant: int = Field(
        32, ge=1, description="Event streams a tenant may hold open at once (429 too_many_streams past it)."
    )
    header_timeout_s: float = Field(10.0, gt=0, description="A client must send a request's headers within this.")
    body_timeout_s: float = Field(60.0, gt=0, description="The whole body must arrive this long after the headers.")
    max_connections: int = Field(
        1_024, ge=1, description="Open connections at most (event streams included); keep under the fd limit."
    )
    tenant_connection_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="Fraction of VIDGEN_API_MAX_CONNECTIONS one tenant's calls may hold at once, while they are "
        "handled (event streams and uploads included): 429 too_many_connections past it.",
    )
    console_defaults: dict[FormField, int | float] = Field(
        {},
        description="JSON map: the web console's starting values for `width`, `height`, `num_frames`, "
        "`num_inference_steps`, `guidance_scale` (e.g. light ones for CPU workers, as `vidgen demo --api` sets); "
        "unset fields start at the contract's defaults. A body that omits a field still gets the contract's default.",
    )

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_algorithms(value)

    @field_validator("console_defaults")
    @classmethod
    def _within_the_contract(cls, value: dict[FormField, int | float]) -> dict[FormField, int | float]:
        try:
            VideoRequest.model_validate({"request_id": "r", "tenant_id": "t", "prompt": "p", **value})
        except ValidationError as exc:
            raise ValueError(
                "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in exc.errors())
            ) from None
        return value

    @model_validator(mode="after")
    def _check(self) -> ApiSettings:
        if len(self.id_key.get_secret_value()) < _ID_KEY_MIN:
            raise ValueError(f"VIDGEN_API_ID_KEY must be at least {_ID_KEY_MIN} characters")
        if self.jwt_jwks_url and self.jwt_public_key_file:
            raise ValueError("set VIDGEN_API_JWT_JWKS_URL or VIDGEN_API_JWT_PUBLIC_KEY_FILE, not both")
        if self.jwt_enabled and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("JWT auth needs VIDGEN_API_JWT_ISSUER and VIDGEN_API_JWT_AUDIENCE")
        if not self.jwt_enabled and not self.keys_file:
            raise ValueError(
                "no way to authenticate callers: set VIDGEN_API_KEYS_FILE, VIDGEN_API_JWT_JWKS_URL or "
                "VIDGEN_API_JWT_PUBLIC_KEY_FILE"
            )
        if self.body_budget_bytes < self.max_body_bytes:
            raise ValueError(
                "VIDGEN_API_BODY_BUDGET_BYTES must be at least VIDGEN_API_MAX_BODY_BYTES (else no large upload could "
                "start)"
            )
        if self.port != 0 and self.port == self.operator_port:
            raise ValueError("VIDGEN_API_PORT and VIDGEN_API_OPERATOR_PORT must differ")
        if self.model_id == TEMPLATE_MODEL_ID:
            raise ValueError(f"VIDGEN_API_MODEL_ID must not be {TEMPLATE_MODEL_ID!r}, the template pool's model")
        return self

    def models(self, topics: TopicSettings) -> ModelRegistry:
        """The models this deployment serves: the GPU pool's (the default), then the template pool's if served."""
        gpu = VideoModel(self.model_id, EASYANIMATE, topic=topics.requests_topic, bulk_topic=topics.bulk_topic)
        template = VideoModel(
            TEMPLATE_MODEL_ID, TEMPLATE, topic=topics.template_topic, bulk_topic=topics.template_topic
        )
        return ModelRegistry([gpu, template] if self.template_model else [gpu])

    def as_environment(self) -> dict[str, str]:
        """The `VIDGEN_API_*` variables that rebuild these settings in another process (the id key revealed on
        purpose: a child process needs it; never log the result)."""
        return environment_of(self, "VIDGEN_API_")

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_jwks_url or self.jwt_public_key_file)

    @property
    def max_tenant_connections(self) -> int:
        """Calls one tenant may have in hand at once: its share of the connections."""
        return max(1, int(self.max_connections * self.tenant_connection_share))

    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            max_connections=self.max_connections,
        )
