"""A job as the API answers it: the view's state, with the video's URLs presigned afresh for this answer (the
ones in the result event expire; presigning is a local signature, no S3 round trip)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from consumer.api.view.job_state import JobState
from consumer.object_store import ObjectStore
from schemas.events import VideoInfo, VideoResult
from schemas.job_api import VideoJob

__all__ = ["object_key", "render_job"]


def object_key(uri: str, bucket: str) -> str | None:
    """The key of `s3://<bucket>/<key>` when it is in `bucket`, else None."""
    prefix = f"s3://{bucket}/"
    return uri.removeprefix(prefix) if uri.startswith(prefix) else None


async def presigned(store: ObjectStore, info: VideoInfo, variant: Literal["video", "poster"]) -> str | None:
    key = object_key(info.uri if variant == "video" else info.poster_uri, store.bucket)
    return await store.presign(key) if key is not None else None


async def render_job(state: JobState, store: ObjectStore, *, now: datetime) -> VideoJob:
    result = VideoResult.model_validate(state.result) if state.result is not None else None
    video = result.video if result is not None else None
    if video is not None:
        url, poster_url = await presigned(store, video, "video"), await presigned(store, video, "poster")
        if url is not None and poster_url is not None:
            video = video.model_copy(
                update={
                    "url": url,
                    "poster_url": poster_url,
                    "url_expires_at": now + timedelta(seconds=store.presign_ttl_s),
                }
            )
    return VideoJob(
        id=state.id,
        status=state.status,
        progress=state.progress,
        created_at=state.created_at,
        updated_at=state.updated_at,
        request=state.request,
        video=video,
        degraded=state.degraded,
        degraded_reason=state.degraded_reason,
        cache_hit=result.cache_hit if result is not None else False,
        error=result.error if result is not None else None,
        metadata=result.metadata if result is not None else (state.request or {}).get("metadata", {}),
        timings=result.timings if result is not None else None,
        cancel_requested_at=state.cancel_requested_at,
    )
