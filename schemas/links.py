"""The answer of `POST /v1/videos/{id}/links`: content links a browser's `<video>` and `<img>` can load without a
credential header (see `consumer.api.auth.link_signing`). Part of the job API's HTTP contract, beside
`schemas/job_api.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ContentLinks"]


class ContentLinks(BaseModel):
    """Paths on this API (relative, so they work behind any proxy) to `GET /v1/videos/{id}/content` with a `token`
    that stands in for the credential on that route only: one job, one tenant, a few minutes."""

    model_config = ConfigDict(frozen=True, title="ContentLinks")

    object: Literal["content_links"] = "content_links"
    video_url: str = Field(description="Redirects to a fresh presigned URL of the MP4.")
    poster_url: str = Field(description="Redirects to a fresh presigned URL of the poster.")
    expires_at: datetime = Field(description="After this the links answer 401; ask for new ones.")
    start_image_url: str | None = Field(
        None, description="Redirects to a fresh presigned URL of the start image, when it is in the tenant's folder."
    )
