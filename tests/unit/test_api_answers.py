"""The job API's answers in OpenAI's shape, from the view's state: the job object (statuses, Unix times, seconds,
size, model), and the error body with the retry hint OpenAI's SDKs read. Pure but for a stand-in S3 client that
only signs."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.api.routes.error_answers import error_response
from consumer.api.routes.job_body import JobAnswers
from consumer.api.view.job_state import JobState, Submitted, apply
from consumer.core.video_models import EASYANIMATE, ModelRegistry, VideoModel
from consumer.object_store import ObjectStore
from schemas.events import VideoRequest

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GPU = VideoModel("easyanimate-v5.1", EASYANIMATE, topic="video.requests", bulk_topic="video.requests.bulk")


class _Signer:
    """generate_presigned_url only: the one S3 call rendering a job makes (a local signature)."""

    async def generate_presigned_url(self, _: str, *, Params: dict[str, str], ExpiresIn: int) -> str:  # noqa: N803
        return f"https://s3.test/{Params['Key']}?expires={ExpiresIn}"


ANSWERS = JobAnswers(
    ObjectStore(_Signer(), bucket="videos", presign_ttl_s=600), ModelRegistry([GPU]), retention_s=3_600
)


def _queued(**request: Any) -> JobState:
    video_request = VideoRequest(request_id="vid-1", tenant_id="shop-1", prompt="a shoe", **request)
    state = apply(None, Submitted(video_request, T0, model=GPU.id))
    assert isinstance(state, JobState)
    return state


def _ended(state: JobState, status: str, **result: Any) -> JobState:
    body = {
        "request_id": state.id,
        "tenant_id": "shop-1",
        "status": status,
        "timings": {"received_at": T0, "completed_at": T0 + timedelta(seconds=30)},
        "worker_id": "w1",
        "model": "tiny",
        **result,
    }
    return dataclasses.replace(state, status=status, result=json.loads(json.dumps(body, default=str)))


async def test_a_queued_job_has_openais_fields_with_the_frames_the_model_will_render() -> None:
    job = await ANSWERS.render(_queued(width=256, height=448, num_frames=10), now=T0)
    assert (job.object, job.status, job.model, job.prompt) == ("video", "queued", "easyanimate-v5.1", "a shoe")
    assert (job.size, job.seconds) == ("256x448", "1.125")  # 10 frames asked, 9 rendered (4k+1), at 8 fps
    assert job.created_at == int(T0.timestamp()) and job.completed_at is None and job.expires_at is None


async def test_a_rejected_job_is_failed_with_the_rejection_code_and_an_ended_job_expires() -> None:
    error = {"code": "content_policy", "message": "no", "retryable": False, "field": "prompt"}
    job = await ANSWERS.render(_ended(_queued(), "rejected", error=error), now=T0)
    assert job.status == "failed" and job.error is not None
    assert (job.error.code, job.error.field, job.error.retryable) == ("content_policy", "prompt", False)
    assert job.completed_at == int(T0.timestamp()) + 30
    assert job.expires_at == int(T0.timestamp()) + 3_600  # the view forgets it a retention after its last change


async def test_a_completed_job_reports_the_videos_own_size_and_duration_and_fresh_urls() -> None:
    video = {
        "uri": "s3://videos/v/a.mp4",
        "url": "https://old",
        "url_expires_at": T0.isoformat(),
        "poster_uri": "s3://videos/v/a.poster.jpeg",
        "poster_url": "https://old",
        "bytes": 10,
        "sha256": "0" * 64,
        "width": 512,
        "height": 288,
        "num_frames": 49,
        "fps": 8,
        "duration_s": 6.125,
    }
    job = await ANSWERS.render(_ended(_queued(), "completed", video=video), now=T0)
    assert (job.status, job.size, job.seconds) == ("completed", "512x288", "6.125")
    assert job.video is not None and job.video.url == "https://s3.test/v/a.mp4?expires=600"


def test_errors_have_openais_body_and_say_whether_to_retry() -> None:
    refused = error_response(422, "invalid_field", "size must be WIDTHxHEIGHT", field="size")
    assert json.loads(refused.text or "") == {
        "error": {
            "message": "size must be WIDTHxHEIGHT",
            "type": "invalid_request_error",
            "param": "size",
            "code": "invalid_field",
            "field": "size",
        }
    }
    assert refused.headers["x-should-retry"] == "false"
    kinds = {
        status: json.loads(error_response(status, "c", "m", headers={"Retry-After": "1"}).text or "")["error"]["type"]
        for status in (400, 401, 404, 409, 429, 503)
    }
    assert kinds == {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "invalid_request_error",
        409: "invalid_request_error",
        429: "rate_limit_error",
        503: "server_error",
    }
    busy = error_response(503, "queue_full", "full", headers={"Retry-After": "5"})
    assert (busy.headers["x-should-retry"], busy.headers["Retry-After"]) == ("true", "5")
