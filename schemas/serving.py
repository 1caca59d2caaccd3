"""What the job API serves besides jobs, in its HTTP contract: the models (`GET /v1/models`, OpenAI's model objects
with what each can render) and the queue (`GET /v1/queue`). `consumer.api.routes.openapi` builds the OpenAPI document
from these models with the job's (`schemas.job_api`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ModelInfo", "ModelList", "QueueInfo"]


class ModelInfo(BaseModel):
    """A model this deployment serves: OpenAI's model object, then what it can render."""

    model_config = ConfigDict(frozen=True, title="ModelInfo")

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds: the family's release (or, for `template`, its addition).")
    owned_by: str
    family: str = Field(
        description="`easyanimate`, `wan`, `ltx`, `hunyuanvideo15`, `cogvideox`, or `template` (the template renderer)."
    )
    default: bool = Field(description="The model of a request that names none.")
    sizes: dict[str, int] = Field(
        description="`min` and `max` pixels of a side, and the `multiple` every side is; `size` is WIDTHxHEIGHT."
    )
    fps: int = Field(description="Frames per second of its videos unless a request names `fps`.")
    frame_rule: str = Field(
        description="Frame counts it renders: `4k+1`, `8k+1` (LTX-Video), `16k+1` (CogVideoX 1.5) or `any`; "
        "`num_frames` off the rule is refused (422), `seconds` is rounded up onto it."
    )
    min_frames: int = Field(1, description="The fewest frames it renders.")
    max_frames: int
    max_seconds: str = Field(description="The longest `seconds` at its fps.")
    start_image: bool = Field(description="Whether it takes a start image (`input_reference`).")
    text_to_video: bool = Field(True, description="Whether it renders without a start image.")
    negative_prompt: bool
    guidance_scale: list[float] | None = Field(description="[min, max]; null: it takes no guidance.")


class ModelList(BaseModel):
    """`GET /v1/models`."""

    model_config = ConfigDict(frozen=True, title="ModelList")

    object: Literal["list"] = "list"
    data: list[ModelInfo]


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
