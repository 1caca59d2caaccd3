"""Render checkpoints in the output bucket, under `<prefix>checkpoints/<tenant hash>/` (`consumer.core.keys`).

`CheckpointStore` knows where a request's checkpoint is and deletes it once the request is answered (or cancelled);
`JobCheckpoints` is one render's: the stored checkpoint it may resume from (refused, and deleted, unless its header's
binding is this render's), periodic captures uploaded in the background while the render goes on (only the newest
waits when an upload is still running), and the capture a job hands back with, stored before the job lets go of its
record. Uploads never hold up the render thread: it only copies the state to the CPU (`StepCheckpoints`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.trace import SpanContext

from consumer.core.job_events import Milestone
from consumer.core.keys import checkpoint_binding, checkpoint_key
from consumer.errors import CheckpointRejected, StorageError
from consumer.object_store import ObjectStore
from consumer.render.checkpoint_format import StoredCheckpoint, TraceLink, decode, encode
from consumer.render.checkpointing import RenderState
from consumer.render.loader import resolve_dtype
from consumer.render.renderer import Renderer
from consumer.render.step_checkpoints import CheckpointSignals, StepCheckpoints
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from schemas.events import VideoRequest

__all__ = ["CheckpointStore", "JobCheckpoints", "Noted", "checkpoint_store"]

log = logging.getLogger(__name__)

MAX_CHECKPOINT_BYTES = 1 << 30
_DELETE_TIMEOUT_S = 5.0
_CONTENT_TYPE = "application/vnd.vidgen.render-checkpoint"

Noted = Callable[[Milestone, int, int], None]
"""(milestone, step, total): a render's state was checkpointed, or the render resumed."""


class CheckpointStore:
    """The worker's checkpoints: `render_setup` names what, besides the request, decides a render's output here (the
    model's dtype and output-changing options), so a checkpoint never resumes on a worker that renders differently."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        key_prefix: str,
        model: str,
        render_setup: str,
        interval_s: float,
        metrics: Metrics,
    ) -> None:
        self._store = store
        self._key_prefix = key_prefix
        self._model = model
        self._render_setup = render_setup
        self.interval_s = interval_s
        self.metrics = metrics

    def key(self, request: VideoRequest) -> str:
        return checkpoint_key(prefix=self._key_prefix, request=request, model=self._model)

    def for_job(self, request: VideoRequest, *, content_key: str, noted: Noted) -> JobCheckpoints:
        binding = checkpoint_binding(content_key=content_key, render_setup=self._render_setup)
        return JobCheckpoints(self, self._store, self.key(request), binding, noted)

    async def discard(self, request: VideoRequest) -> None:
        """Delete the request's checkpoint, if any (it was answered or cancelled). Best effort and bounded: one left
        behind expires with the bucket's lifecycle rule."""
        key = self.key(request)
        try:
            async with asyncio.timeout(_DELETE_TIMEOUT_S):
                await self._store.delete(key)
        except (StorageError, TimeoutError) as exc:
            log.warning("checkpoint of %s not deleted (the lifecycle rule will): %r", request.request_id, exc)


def checkpoint_store(
    settings: Settings, renderer: Renderer, store: ObjectStore, metrics: Metrics
) -> CheckpointStore | None:
    """The worker's checkpoints where they are on (`VIDGEN_CHECKPOINTS`) and its model's renders can be checkpointed
    (the template renderer's cannot). The render setup names the dtype and the options that change the output."""
    if not settings.checkpoints or not renderer.checkpointable:
        return None
    dtype = resolve_dtype(settings.dtype, renderer.device)
    return CheckpointStore(
        store,
        key_prefix=settings.s3_key_prefix,
        model=settings.model,
        render_setup=f"dtype={dtype};fp8={settings.fp8};step_cache={settings.step_cache_threshold}",
        interval_s=settings.checkpoint_interval_s,
        metrics=metrics,
    )


class JobCheckpoints:
    """One render's checkpoints. `resumed_from` is the step its render last resumed from (None: it never did)."""

    def __init__(self, owner: CheckpointStore, store: ObjectStore, key: str, binding: str, noted: Noted) -> None:
        self._owner = owner
        self._store = store
        self._key = key
        self._binding = binding
        self._noted = noted
        self._latest: tuple[RenderState, TraceLink | None] | None = None  # the newest periodic capture, not uploaded
        self._uploading: asyncio.Task[None] | None = None
        self.resumed_from: int | None = None

    async def load(self) -> StoredCheckpoint | None:
        """The stored checkpoint of this render, if there is one it may resume from; a refused one is deleted."""
        data = await self._store.read(self._key, max_bytes=MAX_CHECKPOINT_BYTES)
        if data is None:
            return None
        try:
            return await asyncio.to_thread(decode, data, binding=self._binding)
        except CheckpointRejected as exc:
            log.warning("stored checkpoint refused, rendering from the first step: %s", exc.message)
            await self.discard()
            return None

    def session(self, *, resume: RenderState | None, signals: CheckpointSignals) -> StepCheckpoints:
        """The render thread's side of the next render call (periodic captures come back here to be uploaded)."""
        loop = asyncio.get_running_loop()
        link = _current_trace()

        def saved(state: RenderState) -> None:  # on the render thread
            loop.call_soon_threadsafe(self._queue, state, link)

        return StepCheckpoints(resume=resume, interval_s=self._owner.interval_s, signals=signals, saved=saved)

    def resuming(self, state: RenderState, *, source: str, written_by: TraceLink | None = None) -> None:
        """The render resumes from `state` (`source`: `store` or `memory`); its span links to the one that wrote it."""
        self.resumed_from = state.steps_done
        self._owner.metrics.resumes.labels(source=source).inc()
        span = trace.get_current_span()
        span.add_event("resumed", {"vidgen.resumed_from_step": state.steps_done, "vidgen.resumed_from": source})
        if written_by is not None:
            writer = SpanContext(int(written_by.trace_id, 16), int(written_by.span_id, 16), is_remote=True)
            span.add_link(writer, {"vidgen.link": "checkpoint"})
        self._noted("resumed", state.steps_done, state.total_steps)

    def paused(self, state: RenderState) -> None:
        """The render paused; its state is kept in memory (and stored only if the job hands its record back)."""
        self._owner.metrics.checkpoints.labels(reason="paused").inc()
        trace.get_current_span().add_event("paused", {"vidgen.step": state.steps_done})
        self._noted("checkpointed", state.steps_done, state.total_steps)

    async def hand_back(self, state: RenderState) -> None:
        """Store `state` before the job gives its record back (a periodic upload still running is dropped first)."""
        await self.stop_uploads()
        try:
            await self._save(state, _current_trace(), reason="handed_back")
        except (StorageError, CheckpointRejected) as exc:
            log.error(  # noqa: TRY400 - a storage failure, not a bug: its message is the story
                "checkpoint at step %d not stored; the next owner starts over: %r", state.steps_done, exc
            )

    async def stop_uploads(self) -> None:
        """No more periodic uploads: the render is over (done, failed, paused or handed back)."""
        self._latest = None
        task, self._uploading = self._uploading, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def discard(self) -> None:
        """Delete the stored checkpoint (refused, or no longer needed)."""
        await self.stop_uploads()
        with contextlib.suppress(StorageError):
            await self._store.delete(self._key)

    def _queue(self, state: RenderState, link: TraceLink | None) -> None:
        self._latest = (state, link)
        if self._uploading is None or self._uploading.done():
            self._uploading = asyncio.get_running_loop().create_task(self._upload_latest())

    async def _upload_latest(self) -> None:
        while self._latest is not None:
            (state, link), self._latest = self._latest, None
            try:
                await self._save(state, link, reason="periodic")
            except (StorageError, CheckpointRejected) as exc:
                log.warning("periodic checkpoint at step %d not stored: %r", state.steps_done, exc)

    async def _save(self, state: RenderState, link: TraceLink | None, *, reason: str) -> None:
        started = time.perf_counter()
        data = await asyncio.to_thread(encode, state, binding=self._binding, trace=link)
        metadata = {"vidgen-steps-done": str(state.steps_done), "vidgen-total-steps": str(state.total_steps)}
        await self._store.put(self._key, data, content_type=_CONTENT_TYPE, metadata=metadata)
        metrics = self._owner.metrics
        metrics.checkpoints.labels(reason=reason).inc()
        metrics.checkpoint_write_seconds.observe(time.perf_counter() - started)
        metrics.checkpoint_bytes.observe(len(data))
        log.info(
            "checkpoint at step %d of %d stored (%s, %d bytes)", state.steps_done, state.total_steps, reason, len(data)
        )
        self._noted("checkpointed", state.steps_done, state.total_steps)


def _current_trace() -> TraceLink | None:
    """The span a checkpoint is written under, for the render that resumes it to link to."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return TraceLink(trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x"))
