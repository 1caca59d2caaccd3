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
from typing import Any, Literal

from aiohttp import web
from aiokafka.errors import KafkaError
from opentelemetry import trace
from pydantic import BaseModel

from consumer.api.api_metrics import ApiMetrics
from consumer.api.api_settings import ApiSettings
from consumer.api.auth.authenticator import Caller
from consumer.api.routes.error_answers import ApiFailure
from consumer.api.routes.job_body import JobAnswers
from consumer.api.submission.body import BodyLimits, build_request, received_submission, take_fallback
from consumer.api.submission.body_budget import BodyBudget
from consumer.api.submission.job_ids import IDEMPOTENCY_KEY_PATTERN, idempotent_id, random_id
from consumer.api.submission.shedding import Limits, shed, template_full
from consumer.api.submission.uploads import CheckedImage, SpooledImage, check_upload
from consumer.api.submission.wait_estimate import QueueStats, estimated_wait_s
from consumer.api.video_deletion import VideoDeletion
from consumer.api.view.follower import Listeners
from consumer.api.view.job_state import CancelRequested, JobState, Submitted, request_parameters
from consumer.api.view.job_store import JobStore
from consumer.api.view.pages import QueryError, page, parse_page_query
from consumer.core.degrade import DEGRADED_REASON_HEADER, choose_fallback, degrade, pool_down
from consumer.core.moderation import ContentPolicy
from consumer.core.priority_lanes import Lane, LanePolicy, lane_for
from consumer.core.video_models import (
    MODEL_HEADER,
    TEMPLATE,
    ModelRegistry,
    VideoModel,
    contract_fields,
    seconds_text,
)
from consumer.errors import ImageError, ImageTooLarge, InvalidRequest, StorageError
from consumer.kafka.record_publisher import RecordPublisher
from consumer.object_store import ObjectStore
from consumer.settings import Settings
from schemas.events import VideoControl, VideoRequest
from schemas.job_api import (
    DegradedReason,
    Fallback,
    ModelInfo,
    ModelList,
    QueueInfo,
    VideoDeleted,
    VideoJob,
    VideoJobList,
)

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
        return await self.answers.render(state, now=self.clock())

    async def submit(self, request: web.Request) -> web.Response:
        limits = BodyLimits(
            max_body_bytes=self.api.max_body_bytes,
            max_fields_bytes=self.settings.max_record_bytes,
            max_image_bytes=self.settings.image_max_bytes,
        )
        async with received_submission(request, limits=limits, budget=self.bodies) as submission:
            return await self._submit(request, submission.fields, submission.image)

    async def _submit(self, request: web.Request, fields: dict[str, Any], image: SpooledImage | None) -> web.Response:
        tenant = request[CALLER].tenant_id
        fallback = take_fallback(fields)
        job_id = self._job_id(tenant, request.headers.get("Idempotency-Key"))
        try:
            model = self.models.resolve(fields.get("model"))
            fields = contract_fields(fields, model, image_part=image is not None)
        except InvalidRequest as exc:
            raise ApiFailure(422, exc.code, exc.message, field=exc.field) from exc
        checked = None
        if image is not None:
            if "image_url" in fields:
                raise ApiFailure(422, "invalid_field", "send an image or an image_url, not both", field="image_url")
            checked = await asyncio.to_thread(self._check_image, image, tenant)
            fields["image_url"] = self.objects.uri(checked.key)
        video_request = build_request(
            fields,
            request_id=job_id,
            tenant_id=tenant,
            max_record_bytes=self.settings.max_record_bytes,
            policy=self.policy,
        )
        if request.headers.get("Idempotency-Key") is not None:
            existing = await self.store.find(tenant, job_id)
            if existing is not None:
                return await self._replay(existing, video_request, model)
        reason = self._route(tenant, fallback, lane_for(video_request.priority), model)
        if checked is not None:
            await self._upload(checked)
        headers = [(MODEL_HEADER, model.id.encode())]
        if reason is None:
            await self._publish(model.topic_for(video_request.priority), job_id, video_request, headers=headers)
        else:
            headers.append((DEGRADED_REASON_HEADER, reason.encode()))
            await self._publish(self.settings.template_topic, job_id, video_request, headers=headers)
            self.metrics.degraded.labels(reason=reason).inc()
        self.metrics.submitted.inc()
        degraded = reason is not None or model.family is TEMPLATE
        submitted = Submitted(video_request, self.clock(), degraded=degraded, degraded_reason=reason, model=model.id)
        outcome = await self.store.apply([submitted])
        self.listeners.notify(outcome.changed)
        return await self._job_response(await self._require(tenant, job_id), status=202)

    def _job_id(self, tenant: str, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return random_id(self.entropy(16))
        if not IDEMPOTENCY_KEY_PATTERN.fullmatch(idempotency_key):
            raise ApiFailure(
                422,
                "invalid_header",
                "Idempotency-Key must be 1-255 printable ASCII characters without spaces",
                field="Idempotency-Key",
            )
        return idempotent_id(self.api.id_key.get_secret_value().encode(), tenant, idempotency_key)

    async def _replay(self, existing: JobState, video_request: VideoRequest, model: VideoModel) -> web.Response:
        """The job an Idempotency-Key already names: answered again when the parameters are the same."""
        if existing.deleted_at is not None:
            message = "the job of this Idempotency-Key was deleted; use a new key"
            raise ApiFailure(409, "job_deleted", message, field="Idempotency-Key")
        different_model = existing.model is not None and existing.model != model.id
        if different_model or (existing.request is not None and existing.request != request_parameters(video_request)):
            raise ApiFailure(
                409,
                "idempotency_key_reused",
                "this Idempotency-Key was used with different parameters",
                field="Idempotency-Key",
            )
        self.metrics.idempotent_replays.inc()
        return await self._job_response(existing, status=202, headers={"Idempotent-Replayed": "true"})

    def _check_image(self, image: SpooledImage, tenant: str) -> CheckedImage:
        settings = self.settings
        try:
            return check_upload(
                image,
                tenant_id=tenant,
                key_prefix=settings.s3_key_prefix,
                max_pixels=settings.image_max_pixels,
                max_decoded_bytes=settings.image_max_decoded_bytes,
            )
        except (ImageError, ImageTooLarge) as exc:
            raise ApiFailure(_IMAGE_STATUS.get(exc.code, 422), exc.code, exc.message, field=exc.field) from exc

    def _route(self, tenant: str, requested: Fallback | None, lane: Lane, model: VideoModel) -> DegradedReason | None:
        """None: the model's pool takes the job. A reason: the template pool does, degraded for that reason. 503 when
        the GPU pool is busy for this tenant's job of this lane (it would be shed: over the tenant's own limits, or
        the pool is full and the tenant at or over its share) and the job may not degrade, or the template pool is
        full for the tenant too. A job that asks for the template model itself gets 503 only when that pool is full
        for the tenant."""
        stats = self._queue_stats()
        if model.family is TEMPLATE:
            if template_full(stats, tenant=tenant, max_queued=self.api.max_queued):
                self.metrics.shed.labels(reason="queue_full").inc()
                raise ApiFailure(
                    503, "queue_full", "the template pool's queue is full; try again", headers={"Retry-After": "5"}
                )
            return None
        verdict = shed(stats, tenant=tenant, lane=lane, limits=self._limits())
        reason = degrade(
            busy=verdict is not None,
            down=self._pool_down(stats),
            fallback=choose_fallback(requested, self.api.tenant_fallback.get(tenant), self.api.fallback),
            template_full=template_full(stats, tenant=tenant, max_queued=self.api.max_queued),
        )
        if reason is not None:
            trace.get_current_span().set_attribute("vidgen.degraded_reason", reason)
        elif verdict is not None:
            self.metrics.shed.labels(reason=verdict.reason).inc()
            raise ApiFailure(503, verdict.reason, verdict.message, headers={"Retry-After": str(verdict.retry_after_s)})
        return reason

    def _pool_down(self, stats: QueueStats) -> bool:
        return pool_down(
            last_active=stats.last_active,
            waiting_since=stats.waiting_since,
            now=self.clock(),
            after_s=self.api.pool_down_s,
        )

    async def _upload(self, checked: CheckedImage) -> None:
        file = checked.image.file
        try:
            await asyncio.to_thread(file.seek, 0)
            await self.objects.put(checked.key, file, content_type=checked.content_type, metadata={})
        except StorageError as exc:
            log.warning("start image upload failed: %s", exc.code)
            raise ApiFailure(
                503, "storage_unavailable", "object storage is unavailable; try again", headers={"Retry-After": "5"}
            ) from exc
        self.metrics.uploads.inc()

    async def _publish(
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
        state = await self._require(request[CALLER].tenant_id, request.match_info["id"])
        return await self._job_response(state)

    async def content(self, request: web.Request) -> web.Response:
        """302 to a fresh presigned URL of the MP4 (`variant=video`) or the poster (`variant=thumbnail`)."""
        state = await self._require(request[CALLER].tenant_id, request.match_info["id"])
        variant = request.query.get("variant", "video")
        if variant not in ("video", "thumbnail"):
            raise ApiFailure(422, "invalid_field", "variant must be video or thumbnail", field="variant")
        video = (await self.render(state)).video
        if state.status != "completed" or video is None:
            raise ApiFailure(409, "not_completed", f"the job is {state.status}, not completed")
        key = self.objects.key_of(video.uri if variant == "video" else video.poster_uri)
        if key is None:
            raise ApiFailure(409, "not_available", "the video is not in this API's bucket")
        raise web.HTTPFound(await self.objects.presign(key), headers={"Cache-Control": "no-store"})

    async def cancel(self, request: web.Request) -> web.Response:
        """Stop a job that has not ended; it stays, `failed` with `error.code: cancelled`."""
        tenant = request[CALLER].tenant_id
        state = await self._require(tenant, request.match_info["id"])
        if state.terminal:
            raise ApiFailure(409, "already_terminal", f"the job is already {state.status}")
        await self._control("cancel", state)
        self.metrics.cancels.inc()
        return await self._job_response(state, status=202)

    async def delete(self, request: web.Request) -> web.Response:
        """OpenAI's delete: the video and poster are deleted unless another job shows them
        (`consumer.api.video_deletion`), then the job is cancelled if it runs and forgotten: 404 from now on, on
        every replica. Objects first, so a failure (503) leaves a job a retry deletes."""
        tenant = request[CALLER].tenant_id
        state = await self._require(tenant, request.match_info["id"])
        try:
            fate = await self.deletion.delete_objects(state)
        except StorageError as exc:
            log.warning("deleting the video of %s failed: %s", state.id, exc.code)
            raise ApiFailure(
                503, "storage_unavailable", "object storage is unavailable; try again", headers={"Retry-After": "5"}
            ) from exc
        control = await self._control("delete", state)
        outcome = await self.store.apply([CancelRequested(control, self.clock())])
        self.listeners.notify(outcome.changed)
        self.metrics.deletes.labels(video=fate).inc()
        return web.json_response(text=VideoDeleted(id=state.id).model_dump_json())

    async def _control(self, action: Literal["cancel", "delete"], state: JobState) -> VideoControl:
        control = VideoControl(action=action, request_id=state.id, tenant_id=state.tenant_id, requested_at=self.clock())
        await self._publish(self.settings.control_topic, state.id, control)
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

    async def list_models(self, _: web.Request) -> web.Response:
        body = ModelList(data=[self._model_info(model) for model in self.models])
        return web.json_response(text=body.model_dump_json())

    async def model(self, request: web.Request) -> web.Response:
        model = self.models.get(request.match_info["model"])
        if model is None:
            raise ApiFailure(404, "model_not_found", "this API serves no such model")
        return web.json_response(text=self._model_info(model).model_dump_json())

    def _model_info(self, model: VideoModel) -> ModelInfo:
        family = model.family
        return ModelInfo(
            id=model.id,
            created=family.created,
            owned_by=family.owned_by,
            family=family.name,
            default=model is self.models.default,
            sizes={"min": family.min_side, "max": family.max_side, "multiple": family.size_multiple},
            fps=family.fps,
            frame_rule=family.frame_rule,
            max_frames=family.max_frames,
            max_seconds=seconds_text(family.rendered_frames(family.max_frames), family.fps),
            start_image=family.start_image,
            negative_prompt=family.negative_prompt,
            guidance_scale=list(family.guidance) if family.guidance is not None else None,
        )

    async def queue(self, request: web.Request) -> web.Response:
        """The caller's own jobs and estimates, and the pool's figures (counts only: nothing of another tenant)."""
        tenant = request[CALLER].tenant_id
        stats = self._queue_stats()
        mine = stats.tenant(tenant)
        period = self._limits().bulk_period
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
            pool_down=self._pool_down(stats),
            template_queued=stats.template_queued,
        )
        return web.json_response(text=body.model_dump_json())

    def _limits(self) -> Limits:
        api = self.api
        return Limits(
            max_queued=api.max_queued,
            max_wait_s=api.max_wait_s,
            tenant_max_queued=api.tenant_max_queued,
            tenant_max_wait_s=api.tenant_max_wait_s,
            bulk_period=LanePolicy(self.settings.bulk_min_share).period,
        )

    def _queue_stats(self) -> QueueStats:
        return self.store.queue_stats(
            now=self.clock(), active_s=self.api.worker_active_s, default_service_s=self.api.default_service_s
        )

    async def _require(self, tenant: str, job_id: str) -> JobState:
        state = await self.store.get(tenant, job_id)
        if state is None:
            raise ApiFailure(404, "not_found", "no such video job")
        return state

    async def _job_response(
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
