"""`POST /v1/videos`: a submission (JSON or multipart, OpenAI's fields or the request contract's) checked, routed
to its model's pool (or degraded to the template pool, or refused when the pool is full), its start image uploaded,
the request published and the job answered. The model (`model`, else the deployment's default) turns `size` and
`seconds` into the contract's fields and checks them against what it can render; its id travels in the record's
`vidgen-model` header, so every replica's view knows it. With the fallback `similar`, a degraded job whose uploaded
start image the tenant already has a completed video of is answered at once with that video (`consumer.core.similar`);
every uploaded image's print travels in the `vidgen-image-print` header, so every replica's view indexes it. The job's
fallback choice (its own, else its tenant's or the service's default) travels in the `vidgen-fallback` header, so every
replica's job object shows it and the console's "Render again" keeps it."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from opentelemetry import trace

from consumer.api.routes.videos import CALLER, Handlers
from consumer.api.submission.body import BodyLimits, build_request, received_submission, take_fallback
from consumer.api.submission.image_print import image_print as print_image
from consumer.api.submission.job_ids import IDEMPOTENCY_KEY_PATTERN, idempotent_id, random_id
from consumer.api.submission.shedding import shed, template_full
from consumer.api.submission.similar_answer import similar_result
from consumer.api.submission.uploads import CheckedImage, SpooledImage, check_upload
from consumer.api.view.job_state import Answered, JobState, Submitted, request_parameters
from consumer.core.degrade import DEGRADED_REASON_HEADER, FALLBACK_HEADER, choose_fallback, degrade
from consumer.core.priority_lanes import Lane, lane_for
from consumer.core.similar import PRINT_HEADER, ImagePrint
from consumer.core.video_models import MODEL_HEADER, TEMPLATE, VideoModel, contract_fields
from consumer.errors import ApiFailure, ImageError, ImageTooLarge, InvalidRequest, StorageError
from schemas.events import VideoRequest
from schemas.job_api import DegradedReason, Fallback

__all__ = ["Submissions"]

log = logging.getLogger(__name__)

_IMAGE_STATUS = {"image_too_large": 413, "unsupported_image_type": 415}


@dataclass(frozen=True)
class Submissions:
    handlers: Handlers

    async def submit(self, request: web.Request) -> web.Response:
        limits = BodyLimits(
            max_body_bytes=self.handlers.api.max_body_bytes,
            max_fields_bytes=self.handlers.settings.max_record_bytes,
            max_image_bytes=self.handlers.settings.image_max_bytes,
        )
        async with received_submission(request, limits=limits, budget=self.handlers.bodies) as submission:
            return await self._submit(request, submission.fields, submission.image)

    async def _submit(self, request: web.Request, fields: dict[str, Any], image: SpooledImage | None) -> web.Response:
        tenant = request[CALLER].tenant_id
        api = self.handlers.api
        fallback = choose_fallback(take_fallback(fields), api.tenant_fallback.get(tenant), api.fallback)
        job_id = self._job_id(tenant, request.headers.get("Idempotency-Key"))
        try:
            model = self.handlers.models.resolve(fields.get("model"))
            fields = contract_fields(fields, model, image_part=image is not None)
        except InvalidRequest as exc:
            raise ApiFailure(422, exc.code, exc.message, field=exc.field) from exc
        checked = None
        if image is not None:
            if "image_url" in fields:
                raise ApiFailure(422, "invalid_field", "send an image or an image_url, not both", field="image_url")
            checked = await asyncio.to_thread(self._check_image, image, tenant)
            fields["image_url"] = self.handlers.objects.uri(checked.key)
        video_request = build_request(
            fields,
            request_id=job_id,
            tenant_id=tenant,
            max_record_bytes=self.handlers.settings.max_record_bytes,
            policy=self.handlers.policy,
            model=model,
        )
        if request.headers.get("Idempotency-Key") is not None:
            existing = await self.handlers.store.find(tenant, job_id)
            if existing is not None:
                return await self._replay(existing, video_request, model)
        reason, chosen = self._route(tenant, fallback, lane_for(video_request.priority), model)
        image_print = await self._print(image) if checked is not None and image is not None else None
        if checked is not None:
            await self._upload(checked)  # also for a similar answer: the job's request names an image that exists
        if reason is not None and chosen == "similar" and image_print is not None:
            earlier = await self.handlers.store.similar(tenant, image_print, video_request.width, video_request.height)
            if earlier is not None:
                return await self._answer_similar(video_request, model, earlier, reason)
        headers = [(MODEL_HEADER, model.id.encode()), (FALLBACK_HEADER, fallback.encode())]
        if image_print is not None:
            headers.append((PRINT_HEADER, image_print.text.encode()))
        if reason is None:
            await self.handlers.publish(model.topic_for(video_request.priority), job_id, video_request, headers=headers)
        else:
            headers.append((DEGRADED_REASON_HEADER, reason.encode()))
            await self.handlers.publish(self.handlers.settings.template_topic, job_id, video_request, headers=headers)
            self.handlers.metrics.degraded.labels(reason=reason).inc()
        self.handlers.metrics.submitted.inc()
        degraded = reason is not None or model.family is TEMPLATE
        submitted = Submitted(
            video_request,
            self.handlers.clock(),
            degraded=degraded,
            degraded_reason=reason,
            model=model.id,
            image_print=image_print.text if image_print is not None else None,
            fallback=fallback,
        )
        outcome = await self.handlers.store.apply([submitted])
        self.handlers.listeners.notify(outcome)
        return await self.handlers.job_response(await self.handlers.require(tenant, job_id), status=202)

    async def _print(self, image: SpooledImage) -> ImagePrint | None:
        """The upload's print, off the event loop, a large one decoded under the start-image decode's limits."""
        settings = self.handlers.settings
        limits = {"memory_bytes": settings.image_decode_memory_bytes, "cpu_s": settings.image_decode_cpu_s}
        return await asyncio.to_thread(functools.partial(_print_of, image, **limits))

    async def _answer_similar(
        self, video_request: VideoRequest, model: VideoModel, earlier: JobState, reason: DegradedReason
    ) -> web.Response:
        """Complete the job at once with the tenant's earlier video of the same start image: its result published
        (the degraded reason in its header, for every replica's view), nothing rendered."""
        now = self.handlers.clock()
        result = similar_result(earlier, video_request, now=now)
        headers = [(DEGRADED_REASON_HEADER, reason.encode())]
        await self.handlers.publish(self.handlers.settings.results_topic, result.request_id, result, headers=headers)
        self.handlers.metrics.degraded.labels(reason=reason).inc()
        self.handlers.metrics.similar.inc()
        trace.get_current_span().set_attribute("vidgen.similar_to", earlier.id)
        submitted = Submitted(
            video_request, now, degraded=True, degraded_reason=reason, model=model.id, fallback="similar"
        )
        outcome = await self.handlers.store.apply([submitted, Answered(result, now, degraded_reason=reason)])
        self.handlers.listeners.notify(outcome)
        return await self.handlers.job_response(
            await self.handlers.require(video_request.tenant_id, video_request.request_id), status=202
        )

    def _job_id(self, tenant: str, idempotency_key: str | None) -> str:
        if idempotency_key is None:
            return random_id(self.handlers.entropy(16))
        if not IDEMPOTENCY_KEY_PATTERN.fullmatch(idempotency_key):
            raise ApiFailure(
                422,
                "invalid_header",
                "Idempotency-Key must be 1-255 printable ASCII characters without spaces",
                field="Idempotency-Key",
            )
        return idempotent_id(self.handlers.api.id_key.get_secret_value().encode(), tenant, idempotency_key)

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
        self.handlers.metrics.idempotent_replays.inc()
        return await self.handlers.job_response(existing, status=202, headers={"Idempotent-Replayed": "true"})

    def _check_image(self, image: SpooledImage, tenant: str) -> CheckedImage:
        settings = self.handlers.settings
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

    def _route(
        self, tenant: str, fallback: Fallback, lane: Lane, model: VideoModel
    ) -> tuple[DegradedReason | None, Fallback]:
        """The reason and the fallback that applies (`fallback`, the job's choice; `none` for the template model).
        None: the model's pool takes the job. A reason: the job degrades for that reason (to an earlier video, with
        the fallback `similar`, or the template pool). 503 when the GPU pool is busy for this tenant's job of this
        lane (it would be shed: over the tenant's own limits, or the pool is full and the tenant at or over its
        share) and the job may not degrade, or the template pool is full for the tenant too. A job that asks for the
        template model itself gets 503 only when that pool is full for the tenant."""
        handlers, api = self.handlers, self.handlers.api
        stats = handlers.queue_stats()
        if model.family is TEMPLATE:
            if template_full(stats, tenant=tenant, max_queued=api.max_queued):
                handlers.metrics.shed.labels(reason="queue_full").inc()
                raise ApiFailure(
                    503, "queue_full", "the template pool's queue is full; try again", headers={"Retry-After": "5"}
                )
            return None, "none"
        verdict = shed(stats, tenant=tenant, lane=lane, limits=handlers.limits())
        reason = degrade(
            busy=verdict is not None,
            down=handlers.pool_is_down(stats),
            fallback=fallback,
            template_full=template_full(stats, tenant=tenant, max_queued=api.max_queued),
        )
        if reason is not None:
            trace.get_current_span().set_attribute("vidgen.degraded_reason", reason)
        elif verdict is not None:
            handlers.metrics.shed.labels(reason=verdict.reason).inc()
            raise ApiFailure(503, verdict.reason, verdict.message, headers={"Retry-After": str(verdict.retry_after_s)})
        return reason, fallback

    async def _upload(self, checked: CheckedImage) -> None:
        file = checked.image.file
        try:
            await asyncio.to_thread(file.seek, 0)
            await self.handlers.objects.put(checked.key, file, content_type=checked.content_type, metadata={})
        except StorageError as exc:
            log.warning("start image upload failed: %s", exc.code)
            raise ApiFailure(
                503, "storage_unavailable", "object storage is unavailable; try again", headers={"Retry-After": "5"}
            ) from exc
        self.handlers.metrics.uploads.inc()


def _print_of(image: SpooledImage, *, memory_bytes: int, cpu_s: int) -> ImagePrint | None:
    """The print of a checked upload; None when it cannot be decoded after all (the worker will say why)."""
    try:
        return print_image(image, memory_bytes=memory_bytes, cpu_s=cpu_s)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # what Pillow raises on a broken image
        log.info("no print of the start image: %s", type(exc).__name__)
        return None
