"""A job as the API answers it, in OpenAI's shape: the view's state, with the video's URLs presigned afresh for this
answer (the ones in the result event expire; presigning is a local signature, no S3 round trip).

`phase` says where the job is (`consumer.core.progress_phases`); a queued job's `queue_position` and whether it waits
for a worker come from the queue as the view sees it (`QueueSpot`). `fallback` is the job's choice as the API that
accepted it recorded it; a job another replica answered with a similar video had `similar`.

`seconds` and `size` are the video's once it exists (the frames rendered, over its fps); before, the request's, with
its frames as the model will render them. `expires_at` is when the job leaves the view: `VIDGEN_API_RETENTION_S`
after its last change, once it has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from consumer.api.view.job_state import JobState
from consumer.core.progress_phases import ended_phase
from consumer.core.video_models import ModelRegistry, seconds_text, size_text
from consumer.object_store import ObjectStore
from schemas.events import VideoInfo, VideoResult
from schemas.job_api import JobError, JobPhase, VideoJob

__all__ = ["JobAnswers", "QueueSpot"]


@dataclass(frozen=True)
class QueueSpot:
    """A queued job's place: about how many jobs of its lane start before it (itself included), and whether no
    worker of its pool is active."""

    position: int
    waiting_for_worker: bool = False


@dataclass(frozen=True)
class JobAnswers:
    """What answering a job needs beside its state."""

    objects: ObjectStore
    models: ModelRegistry
    retention_s: float

    async def render(self, state: JobState, *, now: datetime, spot: QueueSpot | None = None) -> VideoJob:
        result = VideoResult.model_validate(state.result) if state.result is not None else None
        video = result.video if result is not None else None
        if video is not None:
            video = await self._presigned(video, now)
        request = state.request
        model = state.model or self.models.default.id
        seconds, size = self._duration_and_size(model, request, video)
        ended = result.timings.completed_at if result is not None and state.terminal else None
        return VideoJob(
            id=state.id,
            status="failed" if state.status == "rejected" else state.status,
            progress=100 if state.status == "completed" else min(state.progress, 99),
            model=model,
            prompt=request.get("prompt") if request is not None else None,
            seconds=seconds,
            size=size,
            created_at=_unix(state.created_at),
            completed_at=_unix(ended) if ended is not None else None,
            expires_at=_unix(state.updated_at + timedelta(seconds=self.retention_s)) if state.terminal else None,
            error=JobError.model_validate(result.error.model_dump()) if result and result.error else None,
            updated_at=_unix(state.updated_at),
            request=request,
            video=video,
            degraded=state.degraded,
            degraded_reason=state.degraded_reason,
            fallback=state.fallback or ("similar" if result is not None and result.similar_to else None),
            similar_to=result.similar_to if result is not None else None,
            cache_hit=result.cache_hit if result is not None else False,
            metadata=result.metadata if result is not None else (request or {}).get("metadata", {}),
            timings=result.timings if result is not None else None,
            cancel_requested_at=_unix(state.cancel_requested_at) if state.cancel_requested_at else None,
            phase=_phase(state, result, spot),
            queue_position=spot.position if spot is not None and state.status == "queued" else None,
            step=state.step if state.status != "queued" else None,
            total=state.total if state.status != "queued" else None,
        )

    def _duration_and_size(
        self, model_id: str, request: dict[str, Any] | None, video: VideoInfo | None
    ) -> tuple[str | None, str | None]:
        if video is not None:
            return seconds_text(video.num_frames, video.fps), size_text(video.width, video.height)
        if request is None:
            return None, None
        model = self.models.get(model_id)
        frames = request["num_frames"]
        if model is not None:
            frames = model.family.rendered_frames(frames)
        return seconds_text(frames, request["fps"]), size_text(request["width"], request["height"])

    async def _presigned(self, video: VideoInfo, now: datetime) -> VideoInfo:
        url, poster_url = await self._presign(video, "video"), await self._presign(video, "poster")
        if url is None or poster_url is None:
            return video
        return video.model_copy(
            update={
                "url": url,
                "poster_url": poster_url,
                "url_expires_at": now + timedelta(seconds=self.objects.presign_ttl_s),
            }
        )

    async def _presign(self, info: VideoInfo, variant: Literal["video", "poster"]) -> str | None:
        key = self.objects.key_of(info.uri if variant == "video" else info.poster_uri)
        return await self.objects.presign(key) if key is not None else None


def _phase(state: JobState, result: VideoResult | None, spot: QueueSpot | None) -> JobPhase:
    if state.terminal:
        return ended_phase(state.status, result.error.code if result is not None and result.error else None)
    if state.status == "in_progress":
        return state.phase or "preparing"
    return "waiting_for_worker" if spot is not None and spot.waiting_for_worker else "queued"


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())
