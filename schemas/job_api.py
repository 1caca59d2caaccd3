"""The job API's HTTP contract, in the shape of OpenAI's video API so its SDKs work unchanged: the body of
`POST /v1/videos`, the job object, lists, the deletion answer, models, the queue and errors.

The submission is OpenAI's `model`, `size` and `seconds` beside the request contract (`schemas.events.VideoRequest`)
without the fields the API fills in itself (`schema_version`, `request_id`, `tenant_id`), generated from it so the two
never drift. `consumer.api.routes.openapi`
builds the OpenAPI document from these models; the checked-in `schemas/openapi.json` is tested against it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from schemas.events import ProgressPhase, Timings, VideoInfo, VideoRequest

__all__ = [
    "API_FILLED_FIELDS",
    "ApiError",
    "ApiErrorBody",
    "DegradedReason",
    "Fallback",
    "JobError",
    "JobPhase",
    "JobStatus",
    "VideoDeleted",
    "VideoJob",
    "VideoJobList",
    "VideoSubmission",
]

API_FILLED_FIELDS = frozenset({"schema_version", "request_id", "tenant_id"})
"""Request fields the API sets itself (the tenant comes from the credential); a body that sends them is refused."""

JobStatus = Literal["queued", "in_progress", "completed", "failed"]
"""OpenAI's video statuses. A job the worker rejected, a cancelled one and an expired one are `failed`, and
`error.code` says which."""
JobPhase = Literal["queued", "waiting_for_worker", ProgressPhase, "completed", "failed", "cancelled"]
"""Where a job is: `queued` (waiting its turn), `waiting_for_worker` (it has waited past a worker's heartbeat and no
GPU worker is active), the worker's phases (`ProgressPhase`), then how it ended (`cancelled`: its tenant cancelled it;
its `status` is `failed`)."""
Fallback = Literal["similar", "template", "none"]
"""What a request may get instead of a refusal when the GPU pool is busy or down: an earlier video of the same
product photo if the tenant has one, else the template video (`similar`); the template video; or nothing."""
DegradedReason = Literal["busy", "pool_down"]
"""Why a request went to the template pool: the GPU pool's queue was full (`busy`), or no GPU worker had shown
activity for `VIDGEN_API_POOL_DOWN_S` while jobs were queued (`pool_down`)."""
_FALLBACK_DESCRIPTION = (
    "When the GPU pool is busy (the answer would be 503) or down, `template` accepts a simpler video from the "
    "template renderer instead (the job says `degraded: true` and why); `similar` accepts the tenant's most recent "
    "completed video of the same start image at once (the job says `similar_to`), else the template video; "
    "`none` refuses (busy) or waits (down). "
    "Absent: the tenant's or the service's default. Not part of the request the workers see."
)
_OPENAI_FIELDS: dict[str, Any] = {
    "model": (
        str | None,
        Field(None, description="A model of `GET /v1/models`; absent: the deployment's default. Unknown: 422."),
    ),
    "size": (
        str | None,
        Field(
            None,
            pattern=r"^[0-9]{1,5}x[0-9]{1,5}$",
            description='"WIDTHxHEIGHT" in pixels, within the model\'s sizes; instead of `width` and `height`.',
        ),
    ),
    "seconds": (
        str | float | None,
        Field(
            None,
            description="How long the video is, at least (a decimal string, as OpenAI's SDKs send it, or a number): "
            "frames are the smallest count on the model's frame grid with `frames / fps >= seconds`; past the "
            "model's most frames, 422. Instead of `num_frames`.",
        ),
    ),
}

if TYPE_CHECKING:  # mypy cannot follow create_model; the fields are VideoRequest's, checked at run time

    class VideoSubmission(BaseModel):
        pass

else:
    VideoSubmission = create_model(
        "VideoSubmission",
        __config__=ConfigDict(extra="forbid", frozen=True, title="VideoSubmission"),
        __doc__="The body of `POST /v1/videos`: OpenAI's `model`, `size` and `seconds`, and the request contract "
        "without schema_version, request_id and tenant_id. As multipart/form-data, the same fields are form fields "
        "(metadata as a JSON object, or as `metadata[KEY]` fields) and an optional `input_reference` file part is "
        "the start image.",
        **_OPENAI_FIELDS,
        **{
            name: (field.annotation, field)
            for name, field in VideoRequest.model_fields.items()
            if name not in API_FILLED_FIELDS and name not in _OPENAI_FIELDS
        },
        fallback=(Fallback | None, Field(None, description=_FALLBACK_DESCRIPTION)),
    )


class ApiError(BaseModel):
    """What went wrong, in OpenAI's shape. `code` is stable snake_case; `param` (and `field`, the same) names the
    request field, header or query parameter at fault."""

    model_config = ConfigDict(frozen=True)

    message: str
    type: str = Field(
        description="`invalid_request_error` (most 4xx), `authentication_error` (401), `rate_limit_error` (429) or "
        "`server_error` (5xx)."
    )
    param: str | None = None
    code: str
    field: str | None = None


class ApiErrorBody(BaseModel):
    """Every error response: `{"error": {"message", "type", "param", "code", "field"}}`."""

    model_config = ConfigDict(frozen=True, title="ApiErrorBody")

    error: ApiError


class JobError(BaseModel):
    """Why a job failed: OpenAI's `code` and `message`, and vidgen's `retryable` and `field`."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(
        description="`cancelled`, `expired`, a rejection of the request (`invalid_field`, `content_policy`, "
        "`image_not_found`, ...) or a failure (`render_failed`, ...); see the event contract's error table."
    )
    message: str
    retryable: bool = Field(description="Whether submitting the same request again may succeed.")
    field: str | None = Field(None, description="The request field at fault, for a rejection.")


class VideoJob(BaseModel):
    """One video job: OpenAI's video object (its fields and types), then vidgen's own."""

    model_config = ConfigDict(frozen=True, title="VideoJob")

    id: str = Field(description="The request id; also the Kafka record key.")
    object: Literal["video"] = "video"
    status: JobStatus
    progress: int = Field(
        ge=0,
        le=100,
        description="Percent of the job done: each phase (`phase`) weighted by its measured share of a job's time; "
        "100 only once completed.",
    )
    model: str = Field(description="The model asked for (the default when none was named).")
    prompt: str | None = Field(None, description="Null until the request reaches this replica's view.")
    seconds: str | None = Field(
        None, description="The video's duration: frames / fps of the frames rendered (or to be rendered)."
    )
    size: str | None = Field(None, description='"WIDTHxHEIGHT".')
    created_at: int = Field(description="Unix seconds.")
    completed_at: int | None = Field(None, description="Unix seconds, once the job ended (in any way).")
    expires_at: int | None = Field(
        None,
        description="Unix seconds, once the job ended: when it leaves the API's view (`VIDGEN_API_RETENTION_S` after "
        "its last change), after which it and its content answer 404. The objects stay in the bucket unless it has a "
        "lifecycle rule of its own.",
    )
    error: JobError | None = None
    updated_at: int = Field(description="Unix seconds of the last change.")
    request: VideoSubmission | None = Field(
        None, description="The parameters as accepted; null until the request record reaches this replica's view."
    )
    video: VideoInfo | None = Field(None, description="When completed; URLs are presigned afresh for each answer.")
    degraded: bool = Field(
        False,
        description="The job went to the template pool: its video is the simpler kind (a slow zoom over the start "
        "image, or a title card), within seconds. True from the start when the API routed it there, or when it "
        "asked for the `template` model.",
    )
    degraded_reason: DegradedReason | None = Field(
        None, description="Why it was routed to the template pool: `busy` or `pool_down`."
    )
    fallback: Fallback | None = Field(
        None,
        description="The job's fallback choice: the one it was submitted with, else its tenant's or the service's "
        "default that applied (`similar`, `template` or `none`); what submitting it again should keep. Null when "
        "not known (a request published by another producer).",
    )
    similar_to: str | None = Field(
        None,
        description="The id of the caller's earlier job whose video answers this one (the `similar` fallback: same "
        "start image, GPU pool busy or down); the job completed at once with that video and poster, `degraded`.",
    )
    cache_hit: bool = False
    metadata: dict[str, str] = Field(default_factory=dict)
    timings: Timings | None = None
    cancel_requested_at: int | None = Field(None, description="Unix seconds a cancel was requested, if one was.")
    phase: JobPhase = Field(
        "queued",
        description="Where the job is: `queued` or `waiting_for_worker` (no GPU worker is active), then the worker's "
        "`preparing`, `denoising`, `decoding`, `encoding`, `uploading`, then `completed`, `failed` or `cancelled`.",
    )
    queue_position: int | None = Field(
        None,
        ge=1,
        description="While queued: about how many jobs of its lane start before it, itself included (1: next): the "
        "caller's own jobs ahead and, per round-robin round until its turn, one of every other tenant's. Null after.",
    )
    step: int | None = Field(None, ge=0, description="Denoising steps done, as its worker last reported.")
    total: int | None = Field(None, ge=1, description="Denoising steps in all, once a worker reported any.")


class VideoJobList(BaseModel):
    """A page of the caller's jobs (newest first unless `order=asc`); pass `last_id` as `after` for the next page."""

    model_config = ConfigDict(frozen=True, title="VideoJobList")

    object: Literal["list"] = "list"
    data: list[VideoJob]
    first_id: str | None = Field(description="The page's first job; null for an empty page.")
    last_id: str | None = Field(description="The page's last job; null for an empty page.")
    has_more: bool


class VideoDeleted(BaseModel):
    """The answer of `DELETE /v1/videos/{id}`."""

    model_config = ConfigDict(frozen=True, title="VideoDeleted")

    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True
