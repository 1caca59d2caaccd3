"""The event contract, version 1: what producers send and what the worker publishes.

These models are the source of truth; `python -m schemas` writes the JSON Schema files under `schemas/json/`
from them, and a test fails when the checked-in files drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = [
    "ID_PATTERN",
    "ErrorInfo",
    "Priority",
    "ProgressPhase",
    "ResultStatus",
    "Timings",
    "VideoControl",
    "VideoInfo",
    "VideoProgress",
    "VideoRequest",
    "VideoResult",
]

SCHEMA_VERSION: Literal[1] = 1
ID_PATTERN = r"^[A-Za-z0-9._:-]+$"

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ID_PATTERN)]
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=32)]
Dimension = Annotated[int, Field(ge=64, le=1360, multiple_of=16)]
ModelId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
ResultStatus = Literal["completed", "failed", "rejected"]
Priority = Literal["interactive", "bulk"]
ProgressPhase = Literal["preparing", "denoising", "decoding", "encoding", "uploading"]
"""What a worker is doing for a request: `preparing` (moderation, start image, memory, the model), `denoising` (the
steps), `decoding` (the VAE turns latents into frames), `encoding` (MP4 and poster), `uploading`."""


class VideoRequest(BaseModel):
    """A request on `video.requests`. Key: `request_id` (UTF-8). Value: this object as UTF-8 JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="VideoRequest")

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Contract version; always 1.")
    request_id: RequestId = Field(description="Idempotency key; also the Kafka record key.")
    tenant_id: TenantId = Field(description="Who asked; echoed in the result.")
    prompt: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] = Field(
        description="What the video shows. Leading and trailing whitespace is trimmed before the length check."
    )
    negative_prompt: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = Field(
        None, description="What the video should avoid."
    )
    image_url: (
        Annotated[
            str,
            StringConstraints(max_length=2048, pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+|https://.+)$"),
        ]
        | None
    ) = Field(
        None,
        description="Start frame (`s3://bucket/key` or `https://...`). Absent: text-to-video, fully masked.",
    )
    model: ModelId | None = Field(
        None,
        description="Public id of the model to render with (the deployment's `GET /v1/models`), which also picks "
        "the topic. Absent: the model of the pool reading the topic. A worker serving another model answers "
        "`rejected`, `model_not_served`, and renders nothing.",
    )
    width: Dimension = Field(
        512,
        description="Pixels; 64-1360, a multiple of 16. Each model narrows it (real checkpoints take 256 and up; "
        "docs/running-workers.md).",
    )
    height: Dimension = Field(
        512,
        description="Pixels; 64-1360, a multiple of 16. Each model narrows it (real checkpoints take 256 and up; "
        "docs/running-workers.md).",
    )
    num_frames: int = Field(
        25,
        ge=1,
        le=257,
        description="Each model narrows it to its own frame rule and range (4k+1 up to 49 for EasyAnimate, 8k+1 for "
        "LTX-Video...); a count off the rule is rejected.",
    )
    num_inference_steps: int = Field(30, ge=1, le=100)
    guidance_scale: float = Field(5.0, ge=1.0, le=20.0, allow_inf_nan=False)
    fps: int = Field(8, ge=1, le=60)
    seed: int | None = Field(
        None, ge=0, le=2**32 - 1, description="Absent: derived from the content, so identical requests match."
    )
    metadata: Metadata = Field(default_factory=dict, description="Echoed back unchanged in the result.")
    render_timeout_s: float | None = Field(
        None, gt=0, le=86_400, description="This request's render deadline; capped by the worker's own setting."
    )
    deadline: AwareDatetime | None = Field(
        None,
        description="ISO 8601 with a UTC offset. If the request has not started rendering by then it fails with "
        "`expired` without rendering or uploading anything; a render already running is not stopped by it.",
    )
    priority: Priority | None = Field(
        None,
        description="`bulk`: a backfill or catalog import, published to `video.requests.bulk`; workers render bulk "
        "requests while no interactive one waits for them, and at least a set share of renders "
        "(`VIDGEN_BULK_MIN_SHARE`) while both wait. Absent or `interactive`: someone waits for the video. A bulk "
        "request found on `video.requests` is still served, as bulk.",
    )

    @field_validator("deadline", mode="before")
    @classmethod
    def _deadline_is_text(cls, value: object) -> object:
        """The schema says a string: a JSON number (which pydantic would read as Unix seconds) is refused."""
        if isinstance(value, int | float):
            raise ValueError("deadline must be an ISO 8601 date-time string with a UTC offset")  # noqa: TRY004
        return value


class VideoControl(BaseModel):
    """A command on `video.control` (compacted). Key: `request_id` (UTF-8). Workers follow every partition of it from
    start-up; a command whose `tenant_id` is not the request's is ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="VideoControl")

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Contract version; always 1.")
    action: Literal["cancel", "delete"] = Field(
        description="`cancel`: answer the request `failed` with `error.code: cancelled`. `delete` (the job API's "
        "`DELETE /v1/videos/{id}`): the same for the worker; the job API also forgets the job and deletes its video."
    )
    request_id: RequestId = Field(description="The request it applies to; also the record key.")
    tenant_id: TenantId = Field(description="Must be the request's own tenant, else the command is ignored.")
    requested_at: AwareDatetime = Field(description="When it was issued (ISO 8601 UTC).")


class VideoInfo(BaseModel):
    """Where the finished video lives and what it is."""

    model_config = ConfigDict(frozen=True)

    uri: str = Field(description="`s3://bucket/key` of the MP4.")
    url: str = Field(description="Presigned HTTPS GET URL of the MP4.")
    url_expires_at: datetime
    poster_uri: str
    poster_url: str
    content_type: Literal["video/mp4"] = "video/mp4"
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int
    height: int
    num_frames: int = Field(description="Frames as rendered (the model may round the request).")
    fps: int
    duration_s: float


class ErrorInfo(BaseModel):
    """Why a request failed or was rejected."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(description="Stable snake_case code; see the error table in docs/event-contract.md.")
    message: str = Field(description="Human-readable and specific.")
    retryable: bool = Field(description="Whether resubmitting the same request may succeed.")
    field: str | None = Field(None, description="The request field at fault, for validation errors.")


class Timings(BaseModel):
    """When things happened (ISO 8601 UTC) and how long the stages took."""

    model_config = ConfigDict(frozen=True)

    received_at: datetime
    render_started_at: datetime | None = None
    render_finished_at: datetime | None = None
    completed_at: datetime
    render_ms: int | None = None
    encode_ms: int | None = None
    upload_ms: int | None = None


class VideoProgress(BaseModel):
    """Optional progress on `video.progress` (when the worker enables it). Key: `request_id`. At most one
    `progress` event per request per interval; the terminal event is always the result on `video.results`."""

    model_config = ConfigDict(frozen=True, title="VideoProgress")

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    tenant_id: str
    event: Literal["started", "progress", "checkpointed", "resumed"] = Field(
        description="`started`: a worker took the request; `progress`: steps done so far; `checkpointed`: the "
        "render's state after `step` was saved (to object storage, or kept in memory while a bulk render is paused "
        "for an interactive request); `resumed`: the render continues from `step` instead of from the start. Consumers "
        "should ignore kinds they do not know."
    )
    step: int = Field(0, ge=0, description="Denoising steps done (counted from the render's first, also when resumed).")
    total: int = Field(ge=1, description="Denoising steps in all.")
    percent: float = Field(
        ge=0,
        le=100,
        description="Of the whole job, each phase weighted by its measured share of a job's time (below 100 until the "
        "result); from a worker that sends no `phase`, of the denoising steps.",
    )
    phase: ProgressPhase | None = Field(
        None, description="What the worker is doing now; absent from workers older than this field."
    )
    eta_s: float | None = Field(None, ge=0, description="Estimated seconds until the render is done.")
    attempt: int = Field(1, ge=1)
    worker_id: str
    at: datetime


class VideoResult(BaseModel):
    """The one terminal event per request on `video.results`. Key: `request_id`."""

    model_config = ConfigDict(frozen=True, title="VideoResult")

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: str
    tenant_id: str | None = Field(description="Null only when the request's own tenant_id was unusable.")
    status: ResultStatus
    video: VideoInfo | None = None
    cache_hit: bool = False
    error: ErrorInfo | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    timings: Timings
    attempt: int = Field(1, ge=1, description="How many attempts this result took.")
    worker_id: str
    model: str = Field(description="Checkpoint id or path, `tiny`, `tiny:<family>`, or `template`.")
    model_id: str | None = Field(
        None,
        description="Public id the worker serves its model under (`VIDGEN_MODEL_ID`; what a request's `model` names; "
        "`template` from the template pool). Null only from workers older than model families.",
    )
    degraded: bool = Field(
        False,
        description="True when the video is the simpler kind: rendered by the template renderer (`model` is "
        "`template`: a slow zoom over the start image, or a title card of the prompt) instead of the diffusion "
        "model, as the job API and the product hook route requests when the GPU pool is busy or down. Set from the "
        "worker's renderer, never from the request.",
    )
    similar_to: str | None = Field(
        None,
        description="Set only on a result the job API or the product hook published itself (the similar-video "
        "fallback, `worker_id` `api` or `product-hook`): the request_id of the same tenant's earlier job whose video "
        "(same start image; for the hook, same product id) answers this request; `video` names that job's objects, "
        "`degraded` is true. Null on every result a worker published.",
    )
    memory_mode: str | None = Field(
        None,
        description="How the render held the model: resident, vae_tiling, model_offload or sequential_offload "
        "(null when nothing was rendered or modes are not managed).",
    )
    resumed_from_step: int | None = Field(
        None,
        ge=1,
        description="The step the render last resumed from: it continued from a checkpoint (saved by a worker that "
        "stopped or died, or kept while the render was paused for an interactive request) instead of rendering "
        "every step here; the video is the same. Null when the render never resumed.",
    )
