"""One valid request in, one result out: start image, cache lookup, render, encode, upload, presign. The job's
`JobTrack` is told as the work moves on (rendering, render ended, each denoising step, encoding, uploading)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from opentelemetry import trace
from opentelemetry.trace import Tracer
from PIL import Image

from consumer.core.clock import WallClock, utc_now
from consumer.core.job import StopSignal
from consumer.core.job_events import JobTrack
from consumer.core.keys import content_key, derive_seed, object_keys
from consumer.core.moderation import Moderator
from consumer.core.results import Identity, StageTimes, completed, failed
from consumer.errors import VidgenError
from consumer.images.sandbox import DecodeLimits, decode_in_sandbox
from consumer.images.sources import StartImageSource
from consumer.memory.modes import MemoryMode
from consumer.object_store import ObjectStore
from consumer.render.render_spec import ModelHold, Rendered, RenderSpec, to_uint8
from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics, resolution_label
from consumer.worker.stored_videos import answers_from_cache, stored_video, video_info
from consumer.worker.video_encoding import POSTER_TYPES, encode_mp4, encode_poster
from schemas.events import VideoRequest, VideoResult

__all__ = ["JobPipeline"]

log = logging.getLogger(__name__)


class JobPipeline:
    """Turns a validated request into its result event. Errors become `failed`/`rejected` results here."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: ObjectStore,
        images: StartImageSource,
        renderer: Renderer,
        identity: Identity,
        metrics: Metrics,
        moderator: Moderator | None = None,
        tracer: Tracer | None = None,
        clock: WallClock = utc_now,
    ) -> None:
        self._moderator = moderator
        self._tracer = tracer or trace.get_tracer(__name__)
        self._settings = settings
        self._store = store
        self._images = images
        self._renderer = renderer
        self._identity = identity
        self._metrics = metrics
        self._clock = clock

    async def process(
        self,
        request: VideoRequest,
        *,
        received_at: datetime,
        record_time: datetime | None = None,
        track: JobTrack,
        attempt: int = 1,
        memory_mode: MemoryMode | None = None,
        stop: StopSignal | None = None,
    ) -> VideoResult:
        """`track` is told when the render starts, each denoising step, once the model is no longer needed (its
        render ended and the model is released, or a cache hit made it unnecessary; not when the attempt fails
        before that), and when encoding and uploading start. `stop` is checked before the start image and before and
        during the render (a cancel answers `failed`, `cancelled`); the request's deadline, when the render would
        start (`expired`)."""
        stages = StageTimes(received_at=received_at)
        try:
            return await self._process(
                request,
                stages,
                memory_mode=memory_mode,
                record_time=record_time or received_at,
                attempt=attempt,
                track=track,
                stop=stop or StopSignal(),
            )
        except VidgenError as exc:
            log.warning("request %s %s: %s", request.request_id, exc.code, exc.message)
            error = exc
        except Exception as exc:  # a bug must still answer the request, not wedge the partition
            log.exception("request %s: unexpected error", request.request_id)
            error = VidgenError(f"internal error: {type(exc).__name__}: {exc}")
        return failed(request, error, timings=stages.timings(self._clock()), attempt=attempt, identity=self._identity)

    async def _process(
        self,
        request: VideoRequest,
        stages: StageTimes,
        *,
        memory_mode: MemoryMode | None,
        record_time: datetime,
        attempt: int,
        track: JobTrack,
        stop: StopSignal,
    ) -> VideoResult:
        stop.check("queued")
        if self._moderator is not None:
            # Before the cache lookup, so a video rendered before a policy change is not handed out after it.
            await self._moderator.check(request)
        image, image_sha256 = await self._start_image(request)
        seed = derive_seed(request, image_sha256=image_sha256)
        key = content_key(request, seed=seed, image_sha256=image_sha256, model=self._identity.model)
        keys = object_keys(
            prefix=self._settings.s3_key_prefix,
            tenant_id=request.tenant_id,
            key=key,
            poster_ext=self._settings.poster_format,
        )

        cached = await self._store.head(keys.video)
        if answers_from_cache(cached):
            track.render_ended()
            self._metrics.cache_hits.inc()
            video = await video_info(self._store, keys, cached, now=self._clock())
            return completed(
                request,
                video=video,
                cache_hit=True,
                timings=stages.timings(self._clock()),
                attempt=attempt,
                identity=self._identity,
            )

        rendered = await self._render(
            request,
            image=image,
            seed=seed,
            stages=stages,
            memory_mode=memory_mode,
            record_time=record_time,
            track=track,
            stop=stop,
        )
        track.render_ended()
        track.encoding()
        memory_mode = rendered.mode
        frames = await asyncio.to_thread(to_uint8, rendered.frames)
        del rendered  # its float frames (4 bytes a sample) are not needed while the 8-bit ones encode and upload

        started = time.perf_counter()
        with self._tracer.start_as_current_span("encode"):
            mp4, poster = await asyncio.to_thread(self._encode, frames, request.fps)
        stages.encode_ms = _ms_since(started)
        self._metrics.encode_seconds.observe(stages.encode_ms / 1000)

        count, height, width, _ = frames.shape
        stored = stored_video(mp4, frames=count, height=height, width=width, fps=request.fps)
        track.uploading()
        started = time.perf_counter()
        with self._tracer.start_as_current_span("upload") as span:
            span.set_attribute("vidgen.video.bytes", len(mp4))
            # Poster first: a video object is the cache marker, so its poster must already exist.
            poster_type = POSTER_TYPES[self._settings.poster_format]
            await self._store.put(keys.poster, poster, content_type=poster_type, metadata={})
            await self._store.put(keys.video, mp4, content_type="video/mp4", metadata=stored.metadata)
        stages.upload_ms = _ms_since(started)
        self._metrics.upload_seconds.observe(stages.upload_ms / 1000)
        self._metrics.video_bytes.observe(len(mp4))

        return completed(
            request,
            video=await video_info(self._store, keys, stored, now=self._clock()),
            cache_hit=False,
            timings=stages.timings(self._clock()),
            attempt=attempt,
            identity=self._identity,
            memory_mode=memory_mode.value if memory_mode else None,
        )

    async def _start_image(self, request: VideoRequest) -> tuple[Image.Image | None, str | None]:
        if request.image_url is None:
            return None, None
        with self._tracer.start_as_current_span("download image") as span:
            span.set_attribute("vidgen.image.scheme", request.image_url.split(":", 1)[0])  # never the URL itself
            data = await self._images.fetch(request.image_url, tenant_id=request.tenant_id)
            span.set_attribute("vidgen.image.bytes", len(data))
            image = await asyncio.to_thread(self._prepare_image, data, request.width, request.height)
        return image, hashlib.sha256(data).hexdigest()

    def _prepare_image(self, data: bytes, width: int, height: int) -> Image.Image:
        limits = DecodeLimits(
            max_pixels=self._settings.image_max_pixels,
            max_decoded_bytes=self._settings.image_max_decoded_bytes,
            memory_bytes=self._settings.image_decode_memory_bytes,
            cpu_s=self._settings.image_decode_cpu_s,
        )
        # At the renderer's source size: the frame's, or larger for the template renderer, which resamples it itself.
        return decode_in_sandbox(data, *self._renderer.source_size(width, height), limits)

    async def _render(
        self,
        request: VideoRequest,
        *,
        image: Image.Image | None,
        seed: int,
        stages: StageTimes,
        memory_mode: MemoryMode | None,
        record_time: datetime,
        track: JobTrack,
        stop: StopSignal,
    ) -> Rendered[NDArray[np.float32]]:
        """Returns once the model is released, with the frames still in floats."""
        spec = RenderSpec(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or "",
            width=request.width,
            height=request.height,
            num_frames=request.num_frames,
            steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            seed=seed,
        )
        hold = ModelHold()
        timeout_s = min(self._settings.render_timeout_s, request.render_timeout_s or self._settings.render_timeout_s)
        with self._tracer.start_as_current_span("render") as span:
            span.set_attributes({"vidgen.width": spec.width, "vidgen.height": spec.height, "vidgen.steps": spec.steps})

            def progress(step: int, total: int) -> None:
                # One event per denoising step on the render span, rather than a span per step.
                span.add_event("denoising step", {"step": step, "total": total})
                track.progress(step, total)

            track.rendering()
            try:
                rendered = await self._renderer.render_float(
                    spec,
                    image,
                    timeout_s=timeout_s,
                    on_progress=progress,
                    mode=memory_mode,
                    hold=hold,
                    stop=stop,
                    start_by=request.deadline,
                )
            finally:
                if hold.taken_at is not None:
                    # Time spent waiting for the previous render is queue time, not render time.
                    stages.render_started_at = hold.taken_at
                    queued_s = (hold.taken_at - record_time).total_seconds()
                    self._metrics.queue_wait_seconds.observe(max(0.0, queued_s))
            if rendered.mode is not None:
                span.set_attribute("vidgen.memory_mode", rendered.mode.value)
        stages.render_finished_at = hold.released_at
        stages.render_ms = round((hold.seconds or 0.0) * 1000)
        self._metrics.renders.labels(memory_mode=rendered.mode.value if rendered.mode else "unmanaged").inc()
        self._metrics.render_seconds.labels(
            resolution=resolution_label(request.width, request.height), frames=str(rendered.frames.shape[0])
        ).observe(stages.render_ms / 1000)
        return rendered

    def _encode(self, frames: NDArray[np.uint8], fps: int) -> tuple[bytes, bytes]:
        return encode_mp4(frames, fps=fps), encode_poster(frames[0], fmt=self._settings.poster_format)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
