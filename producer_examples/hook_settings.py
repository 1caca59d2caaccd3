"""The product hook's settings (`VIDGEN_HOOK_*`): where it listens, the shop platform's signing secrets, its own key
for request ids, prompt templates, render options, the tenant rate limit, HTTP limits and the fallback when the GPU
pool is busy. Kafka, the record size limit and the banned terms come from the worker's `VIDGEN_*` settings."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumer.core.model_families import family_named
from consumer.core.video_models import VideoModel
from consumer.http_server.connection_guard import HttpLimits
from consumer.settings import Settings
from producer_examples.products import DEFAULT_TEMPLATE, check_template
from schemas.events import Priority
from schemas.job_api import Fallback

__all__ = ["HookSettings", "pool_model"]

_ID_KEY_MIN = 32


class HookSettings(BaseSettings):
    """`VIDGEN_HOOK_*`. Kafka connection settings, the record size limit and the banned terms come from the worker's
    `VIDGEN_*` Settings, so the hook checks a request exactly as the worker will."""

    model_config = SettingsConfigDict(
        env_prefix="VIDGEN_HOOK_", extra="ignore", frozen=True, populate_by_name=True, hide_input_in_errors=True
    )

    host: str = "0.0.0.0"  # noqa: S104 - the shop platform reaches the hook from outside the pod
    port: int = Field(8081, ge=0, le=65_535)
    secret: SecretStr = Field(description="Shared HMAC secret of the shop platform.")
    previous_secret: SecretStr | None = Field(None, description="Also accepted during a secret rotation.")
    id_key: SecretStr = Field(
        description="The hook's own HMAC key for request ids (at least 32 characters). Never shared: unlike the "
        "signing secrets, the shop platform does not know it, so no shop can predict another's request ids. "
        "Keep it stable: a new key gives every product a new id."
    )
    tolerance_s: float = Field(300.0, gt=0, description="Largest allowed distance of `t=` from now.")
    templates: dict[str, str] = Field(default_factory=dict, description="JSON map shop_id -> prompt template.")
    default_template: str = DEFAULT_TEMPLATE
    priority: Priority = Field(
        "bulk",
        description="Lane of the hook's requests: a product-created webhook is a catalog import that nobody watches "
        "render, so `bulk` (published to `video.requests.bulk`, rendered while no interactive request waits).",
    )
    model: str | None = Field(
        None,
        description="Public id of the model the hook's requests name: one of VIDGEN_MODEL_POOLS (published to its "
        "topics, checked against its family's rules first, its pool's lag watched). Unset: the default GPU pool "
        "(VIDGEN_REQUESTS_TOPIC, VIDGEN_BULK_TOPIC), the request naming no model.",
    )
    rate_per_s: float = Field(1.0, gt=0, description="Requests per second a shop may sustain.")
    burst: int = Field(10, ge=1, description="Requests a shop may send at once.")
    fallback: Fallback = Field(
        "template",
        description="A product's request when the GPU pool is busy or down: `template` sends it to the template pool "
        "(VIDGEN_TEMPLATE_TOPIC; a simple product video on the page within seconds beats a blank one), `none` "
        "answers 503 when busy (the platform retries) and queues it when down; `similar` answers it at once with the "
        "shop's most recent completed video of the same product id (same aspect ratio), else as `template`.",
    )
    shop_fallback: dict[str, Fallback] = Field(
        {}, description="JSON map shop_id -> `similar`, `template` or `none`: that shop's fallback."
    )
    similar_capacity: int = Field(
        20_000,
        ge=1,
        description="Where a fallback is `similar`: the most completed product videos the hook keeps in its index "
        "(read from VIDGEN_RESULTS_TOPIC and VIDGEN_CONTROL_TOPIC; the oldest go first; 4 at most per product). "
        "About 2.3 KB of memory each (`python -m bench.similar_lookup --hook`): 20,000 take about 45 MiB.",
    )
    max_queued: int = Field(
        100,
        ge=1,
        description="The GPU pool is busy while this many requests on the hook's topics are not yet answered (its "
        "consumer group's lag).",
    )
    pool_down_s: float = Field(
        300.0,
        gt=0,
        description="The GPU pool is down when requests wait and its consumer group has committed nothing for this "
        "long: longer than one render, since the group commits when a job ends.",
    )
    pool_check_s: float = Field(2.0, gt=0, description="How often the hook reads the GPU pool's offsets.")
    width: int = Field(512, ge=256, le=1024, multiple_of=16)
    height: int = Field(512, ge=256, le=1024, multiple_of=16)
    num_frames: int = Field(25, ge=1, le=49)
    num_inference_steps: int = Field(30, ge=1, le=100)
    deadline_s: float = Field(
        86_400.0,
        gt=0,
        description="Each request's `deadline`, this long after the webhook: a product video nobody has seen a day "
        "later is waste, so a worker answers it `expired` instead of rendering it.",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1_024)
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A client must complete a request's headers this long after connecting (or after "
        "the previous response on a keep-alive connection), else the connection is closed.",
    )
    body_timeout_s: float = Field(
        10.0, gt=0, description="The whole body must arrive this long after the headers, else 408 and closed."
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="Open connections at most; at the bound the slowest client waiting to send makes "
        "room, or, when every connection is being served, the newcomer gets 503. Keep under the descriptor limit.",
    )
    publish_timeout_s: float = Field(10.0, gt=0)
    recent_capacity: int = Field(10_000, ge=1, description="Recently published request ids not republished.")
    otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("VIDGEN_HOOK_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="OTLP/HTTP collector, e.g. http://jaeger:4318; unset: spans are recorded, not exported.",
    )

    @field_validator("default_template")
    @classmethod
    def _check_default(cls, value: str) -> str:
        return check_template(value)

    @field_validator("templates")
    @classmethod
    def _check_templates(cls, value: dict[str, str]) -> dict[str, str]:
        return {shop: check_template(template) for shop, template in value.items()}

    @model_validator(mode="after")
    def _check_secrets(self) -> HookSettings:
        if len(self.secret.get_secret_value()) < 16:
            raise ValueError("secret must be at least 16 characters")
        id_key = self.id_key.get_secret_value()
        if len(id_key) < _ID_KEY_MIN:
            raise ValueError(f"id_key must be at least {_ID_KEY_MIN} characters")
        if any(s is not None and s.get_secret_value() == id_key for s in (self.secret, self.previous_secret)):
            raise ValueError("id_key must differ from the signing secrets (the shop platform knows those)")
        return self

    def render_options(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "num_inference_steps": self.num_inference_steps,
        }

    def http_limits(self) -> HttpLimits:
        return HttpLimits(
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            max_connections=self.max_connections,
        )


def pool_model(hook: HookSettings, settings: Settings) -> VideoModel | None:
    """The pool `VIDGEN_HOOK_MODEL` names (None: the default GPU pool); ValueError naming the served ids if none."""
    if hook.model is None:
        return None
    pool = next((pool for pool in settings.model_pools if pool.id == hook.model), None)
    if pool is None:
        served = ", ".join(pool.id for pool in settings.model_pools) or "none"
        raise ValueError(f"VIDGEN_HOOK_MODEL must be the id of one of VIDGEN_MODEL_POOLS (served: {served})")
    return VideoModel(pool.id, family_named(pool.family), topic=pool.topic, bulk_topic=pool.bulk)
