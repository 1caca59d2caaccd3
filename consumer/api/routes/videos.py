"""The `/v1` endpoints, in the shape of OpenAI's video API (`client.videos` and `client.models` of its SDKs work
against them). Each one reads the caller's tenant from the request (set by the auth middleware) and asks the view
only for that tenant's jobs: another tenant's id, an unknown id and a deleted job get the same 404.

An answer about a job that has not ended carries `openai-poll-after-ms`, so the SDK's `poll` asks again no faster
than workers report progress (`VIDGEN_PROGRESS_INTERVAL_S`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from consumer.api.api_metrics import ApiMetrics
from consumer.api.api_settings import ApiSettings
from consumer.api.auth.authenticator import Caller
from consumer.api.routes.job_body import JobAnswers, QueueSpot
from consumer.api.submission.body_budget import BodyBudget
from consumer.api.submission.shedding import Limits
from consumer.api.submission.wait_estimate import QueueStats, estimated_wait_s, queue_position
from consumer.api.video_deletion import VideoDeletion
from consumer.api.view.job_state import CancelRequested, JobState
from consumer.api.view.job_store import JobStore
from consumer.api.view.listeners import Listeners
from consumer.api.view.pages import page, parse_page_query
from consumer.core.degrade import pool_down
from consumer.core.download_names import content_disposition
from consumer.core.keys import tenant_may_read
from consumer.core.moderation import ContentPolicy
from consumer.core.priority_lanes import LanePolicy
from consumer.core.video_models import (
    ModelRegistry,
)
from consumer.errors import ApiFailure, QueryError, StorageError
from consumer.kafka.record_publisher import RecordPublisher
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from schemas.events import VideoControl
from schemas.job_api import (
    VideoDeleted,
    VideoJob,
    VideoJobList,
)
from schemas.serving import QueueInfo

__all__ = ["CALLER", "Handlers"]

log = logging.getLogger(__name__)

CALLER = web.RequestKey("caller", Caller)
_IMAGE_STATUS = {"image_too_large": 413, "unsupported_image_type": 415}
_MIN_POLL_AFTER_MS = 500


@dataclass
class Handlers:
    api: ApiSettings
    settings: Settings
    store: JobStore
    objects: ObjectStore
    listeners: Listeners
    metrics: ApiMetrics
    policy: ContentPolicy
    clock: Callable[[], datetime]
    entropy: Callable[[int], bytes]
    bodies: BodyBudget
    models: ModelRegistry
    deletion: VideoDeletion
    publisher: RecordPublisher | None = None

    @property
    def answers(self) -> JobAnswers:
        return JobAnswers(self.objects, self.models, self.api.retention_s)

    async def render(self, state: JobState) -> VideoJob:
        return await self.answers.render(state, now=self.clock(), spot=await self.queue_spot(state))

    async def queue_spot(self, state: JobState) -> QueueSpot | None:
        """A queued job's place in its lane, and whether it waits for a GPU worker: none is active and it has waited
        longer than a worker's heartbeat (a worker that just started has reported nothing yet)."""
        if state.status != "queued":
            return None
        stats = self.queue_stats()
        own_ahead = await self.store.queued_ahead(state)
        position = queue_position(stats, state.tenant_id, state.lane, own_ahead=own_ahead, degraded=state.degraded)
        waited_s = (self.clock() - state.created_at).total_seconds()
        idle = not state.degraded and stats.workers_active == 0 and waited_s > self.api.worker_heartbeat_s
        return QueueSpot(position, waiting_for_worker=idle)

    def pool_is_down(self, stats: QueueStats) -> bool:
        return pool_down(
            last_active=stats.last_active,
            waiting_since=stats.waiting_since,
            now=self.clock(),
            after_s=self.api.pool_down_s,
        )

    async def publish(
        self, topic: str, key: str, value: BaseModel, *, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        if self.publisher is None:
            raise ApiFailure(503, "starting", "the API is starting", headers={"Retry-After": "1"})
        try:
            async with asyncio.timeout(self.api.publish_timeout_s):
                await self.publisher.publish(topic, key, value, headers=headers)
        except (KafkaError, TimeoutError) as exc:
            log.warning("publishing to %s failed: %r", topic, exc)
            raise ApiFailure(
                503, "unavailable", "Kafka did not acknowledge in time; try again", headers={"Retry-After": "5"}
            ) from exc

    async def status(self, request: web.Request) -> web.Response:
        state = await self.require(request[CALLER].tenant_id, request.match_info["id"])
        return await self.job_response(state)

    async def content(self, request: web.Request) -> web.Response:
        """302 to a fresh presigned URL of the MP4 (`variant=video`, saved as `attachment` under a readable name:
        `consumer.core.download_names`), the poster (`variant=thumbnail`) or the job's start image
        (`variant=start_image`, any status: only one in its tenant's own upload folder). `HEAD` answers the same."""
        state = await self.require(request[CALLER].tenant_id, request.match_info["id"])
        variant = request.query.get("variant", "video")
        if variant not in ("video", "thumbnail", "start_image"):
            raise ApiFailure(422, "invalid_field", "variant must be video, thumbnail or start_image", field="variant")
        if variant == "start_image":
            key = self.start_image_key(state)
            if key is None:
                raise ApiFailure(409, "not_available", "the job has no start image in this API's bucket")
            raise web.HTTPFound(await self.objects.presign(key), headers={"Cache-Control": "no-store"})
        video = (await self.render(state)).video
        if state.status != "completed" or video is None:
            raise ApiFailure(409, "not_completed", f"the job is {state.status}, not completed")
        key = self.objects.key_of(video.uri if variant == "video" else video.poster_uri)
        if key is None:
            raise ApiFailure(409, "not_available", "the video is not in this API's bucket")
        disposition = None
        if variant == "video":
            request_fields = state.request or {}
            disposition = content_disposition(
                job_id=state.id, metadata=request_fields.get("metadata") or {}, prompt=request_fields.get("prompt")
            )
        url = await self.objects.presign(key, disposition=disposition)
        raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})

    def start_image_key(self, state: JobState) -> str | None:
        """The key of the job's start image when it is in this API's bucket, in its tenant's own upload folder."""
        image_url = (state.request or {}).get("image_url")
        key = self.objects.key_of(image_url) if isinstance(image_url, str) else None
        if key is None or not tenant_may_read(key, prefix=self.settings.s3_key_prefix, tenant_id=state.tenant_id):
            return None
        return key

    async def cancel(self, request: web.Request) -> web.Response:
        """Stop a job that has not ended; it stays, `failed` with `error.code: cancelled`. The answer is the job as
        the cancel leaves it: `cancel_requested_at` set, its status as it then is."""
        tenant = request[CALLER].tenant_id
        state = await self.require(tenant, request.match_info["id"])
        if state.terminal:
            raise ApiFailure(409, "already_terminal", f"the job is already {state.status}")
        control = await self._control("cancel", state)
        self.metrics.cancels.inc()
        outcome = await self.store.apply([CancelRequested(control, self.clock())])
        self.listeners.notify(outcome)
        latest = {changed.id: changed for changed in outcome.changed}.get(state.id, state)
        return await self.job_response(latest, status=202)

    async def delete(self, request: web.Request) -> web.Response:
        """OpenAI's delete: the video and poster are deleted unless another job shows them
        (`consumer.api.video_deletion`), then the job is cancelled if it runs and forgotten: 404 from now on, on
        every replica. Objects first, so a failure (503) leaves a job a retry deletes."""
        tenant = request[CALLER].tenant_id
        state = await self.require(tenant, request.match_info["id"])
        try:
            fate = await self.deletion.delete_objects(state)
        except StorageError as exc:
            log.warning("deleting the video of %s failed: %s", state.id, exc.code)
            raise ApiFailure(
                503, "storage_unavailable", "object storage is unavailable; try again", headers={"Retry-After": "5"}
            ) from exc
        control = await self._control("delete", state)
        outcome = await self.store.apply([CancelRequested(control, self.clock())])
        self.listeners.notify(outcome)
        self.metrics.deletes.labels(video=fate).inc()
        return web.json_response(text=VideoDeleted(id=state.id).model_dump_json())

    async def _control(self, action: Literal["cancel", "delete"], state: JobState) -> VideoControl:
        control = VideoControl(action=action, request_id=state.id, tenant_id=state.tenant_id, requested_at=self.clock())
        await self.publish(self.settings.control_topic, state.id, control)
        return control

    async def list_jobs(self, request: web.Request) -> web.Response:
        tenant = request[CALLER].tenant_id
        try:
            query = parse_page_query(request.query)
        except QueryError as exc:
            raise ApiFailure(422, "invalid_field", exc.message, field=exc.field) from exc
        rows = await self.store.page(tenant, query)
        if rows is None:
            raise ApiFailure(422, "invalid_field", "after must be the id of one of your jobs", field="after")
        states, has_more = page(rows, query)
        body = VideoJobList(
            data=[await self.render(state) for state in states],
            first_id=states[0].id if states else None,
            last_id=states[-1].id if states else None,
            has_more=has_more,
        )
        return web.json_response(text=body.model_dump_json(exclude_none=True))

    async def queue(self, request: web.Request) -> web.Response:
        """The caller's own jobs and estimates, and the pool's figures (counts only: nothing of another tenant)."""
        tenant = request[CALLER].tenant_id
        stats = self.queue_stats()
        mine = stats.tenant(tenant)
        period = self.limits().bulk_period
        body = QueueInfo(
            queued=stats.queued,
            bulk_queued=stats.bulk_queued,
            in_progress=stats.in_progress,
            workers_active=stats.workers_active,
            tenant_queued=mine.queued,
            tenant_bulk_queued=mine.bulk_queued,
            tenant_in_progress=mine.in_progress,
            estimated_wait_s=estimated_wait_s(stats, tenant, "interactive", bulk_period=period),
            bulk_estimated_wait_s=estimated_wait_s(stats, tenant, "bulk", bulk_period=period),
            pool_down=self.pool_is_down(stats),
            template_queued=stats.template_queued,
        )
        return web.json_response(text=body.model_dump_json())

    def limits(self) -> Limits:
        api = self.api
        return Limits(
            max_queued=api.max_queued,
            max_wait_s=api.max_wait_s,
            tenant_max_queued=api.tenant_max_queued,
            tenant_max_wait_s=api.tenant_max_wait_s,
            bulk_period=LanePolicy(self.settings.bulk_min_share).period,
        )

    def queue_stats(self) -> QueueStats:
        return self.store.queue_stats(
            now=self.clock(),
            active_s=self.api.worker_active_s,
            default_service_s=self.api.default_service_s,
            heartbeat_s=self.api.worker_heartbeat_s,
        )

    async def require(self, tenant: str, job_id: str) -> JobState:
        state = await self.store.get(tenant, job_id)
        if state is None:
            raise ApiFailure(404, "not_found", "no such video job")
        return state

    async def job_response(
        self, state: JobState, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        job = await self.render(state)
        headers = dict(headers or {})
        if status == 202:
            headers["Location"] = f"/v1/videos/{state.id}"
        if not state.terminal:
            headers["openai-poll-after-ms"] = str(self.poll_after_ms)
        return web.json_response(text=job.model_dump_json(exclude_none=True), status=status, headers=headers)

    @property
    def poll_after_ms(self) -> int:
        return max(_MIN_POLL_AFTER_MS, round(self.settings.progress_interval_s * 1000))
