"""The job API's HTTP contract: the body of `POST /v1/videos`, the job object, lists, the queue and errors.

The submission is the request contract (`schemas.events.VideoRequest`) without the fields the API fills in itself
(`schema_version`, `request_id`, `tenant_id`), generated from it so the two never drift. `consumer.api.routes.openapi`
builds the OpenAPI document from these models; the checked-in `schemas/openapi.json` is tested against it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from schemas.events import ErrorInfo, Timings, VideoInfo, VideoRequest

__all__ = [
    "API_FILLED_FIELDS",
    "ApiError",
    "ApiErrorBody",
    "DegradedReason",
    "Fallback",
    "JobStatus",
    "QueueInfo",
    "VideoJob",
    "VideoJobList",
    "VideoSubmission",
]

API_FILLED_FIELDS = frozenset({"schema_version", "request_id", "tenant_id"})
"""Request fields the API sets itself (the tenant comes from the credential); a body that sends them is refused."""

JobStatus = Literal["queued", "in_progress", "completed", "failed", "rejected"]
Fallback = Literal["template", "none"]
"""What a request may get instead of a refusal when the GPU pool is busy or down: the template video, or nothing."""
DegradedReason = Literal["busy", "pool_down"]
"""Why a request went to the template pool: the GPU pool's queue was full (`busy`), or no GPU worker had shown
activity for `VIDGEN_API_POOL_DOWN_S` while jobs were queued (`pool_down`)."""
_FALLBACK_DESCRIPTION = (
    "When the GPU pool is busy (the answer would be 503) or down, `template` accepts a simpler video from the "
    "template renderer instead (the job says `degraded: true` and why); `none` refuses (busy) or waits (down). "
    "Absent: the tenant's or the service's default. Not part of the request the workers see."
)

if TYPE_CHECKING:  # mypy cannot follow create_model; the fields are VideoRequest's, checked at run time

    class VideoSubmission(BaseModel):
        pass

else:
    VideoSubmission = create_model(
        "VideoSubmission",
        __config__=ConfigDict(extra="forbid", frozen=True, title="VideoSubmission"),
        __doc__="The body of `POST /v1/videos`: the request contract without schema_version, request_id and "
        "tenant_id. As multipart/form-data, the same fields are form fields (metadata as a JSON object) and an "
        "optional `image` file part is the start image.",
        **{
            name: (field.annotation, field)
            for name, field in VideoRequest.model_fields.items()
            if name not in API_FILLED_FIELDS
        },
        fallback=(Fallback | None, Field(None, description=_FALLBACK_DESCRIPTION)),
    )


class ApiError(BaseModel):
    """What went wrong. `code` is stable snake_case; `field` names the request field or header at fault."""

    model_config = ConfigDict(frozen=True)

    code: str
    message: str
    field: str | None = None


class ApiErrorBody(BaseModel):
    """Every error response: `{"error": {"code", "message", "field"?}}`."""

    model_config = ConfigDict(frozen=True, title="ApiErrorBody")

    error: ApiError


class VideoJob(BaseModel):
    """One video job as the API's view of the topics sees it."""

    model_config = ConfigDict(frozen=True, title="VideoJob")

    id: str = Field(description="The request id; also the Kafka record key.")
    object: Literal["video"] = "video"
    status: JobStatus = Field(description="A cancelled job is `failed` with `error.code: cancelled`.")
    progress: int = Field(ge=0, le=100, description="Percent of the render done.")
    created_at: datetime
    updated_at: datetime
    request: VideoSubmission | None = Field(
        None, description="The parameters as accepted; null until the request record reaches this replica's view."
    )
    video: VideoInfo | None = Field(None, description="When completed; URLs are presigned afresh for each answer.")
    degraded: bool = Field(
        False,
        description="The job went to the template pool: its video is the simpler kind (a slow zoom over the start "
        "image, or a title card), within seconds. True from the start when the API routed it there.",
    )
    degraded_reason: DegradedReason | None = Field(
        None, description="Why it was routed to the template pool: `busy` or `pool_down`."
    )
    cache_hit: bool = False
    error: ErrorInfo | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    timings: Timings | None = None
    cancel_requested_at: datetime | None = Field(None, description="When a cancel was requested, if one was.")


class VideoJobList(BaseModel):
    """A page of the caller's jobs, newest first; pass the last one's id as `after` for the next page."""

    model_config = ConfigDict(frozen=True, title="VideoJobList")

    object: Literal["list"] = "list"
    data: list[VideoJob]
    has_more: bool


class QueueInfo(BaseModel):
    """The queue as the view sees it: the caller's own jobs and estimates, and the GPU pool's figures over every tenant
    (and how many wait for the template pool)."""

    model_config = ConfigDict(frozen=True, title="QueueInfo")

    object: Literal["queue"] = "queue"
    queued: int = Field(ge=0, description="Jobs of every tenant accepted and not started, in both lanes.")
    bulk_queued: int = Field(
        0,
        ge=0,
        description="Of `queued`, the bulk lane's (`priority: bulk`). Workers take them only while no interactive "
        "job waits, so they count toward the queue limit and the wait of bulk jobs only.",
    )
    in_progress: int = Field(ge=0, description="Jobs of every tenant rendering, in both lanes.")
    workers_active: int = Field(ge=0, description="Workers that published progress or a result recently.")
    tenant_queued: int = Field(0, ge=0, description="Of `queued`, the caller's own, in both lanes.")
    tenant_bulk_queued: int = Field(0, ge=0, description="Of `tenant_queued`, the bulk lane's.")
    tenant_in_progress: int = Field(0, ge=0, description="Of `in_progress`, the caller's own.")
    estimated_wait_s: float | None = Field(
        None,
        ge=0,
        description="Estimated seconds before an interactive job the caller submits now starts: the caller's own "
        "interactive jobs queued, plus one job of every other tenant with interactive jobs queued for each round "
        "(workers serve tenants round-robin), plus every job rendering, over the workers active; null while no "
        "worker is seen.",
    )
    bulk_estimated_wait_s: float | None = Field(
        None,
        ge=0,
        description="The same for a bulk job: the caller's bulk jobs and one per round of each other tenant's, plus "
        "the interactive jobs (anyone's) started before it, at most `1 / VIDGEN_BULK_MIN_SHARE - 1` per bulk job.",
    )
    pool_down: bool = Field(
        False,
        description="Jobs are queued and no GPU worker has shown activity for `VIDGEN_API_POOL_DOWN_S`: new jobs "
        "that allow the template go to the template pool.",
    )
    template_queued: int = Field(0, ge=0, description="Jobs routed to the template pool and not started.")
