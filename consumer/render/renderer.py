"""The renderer: one model, loaded once, run on a dedicated thread so the event loop keeps polling Kafka. What a
render is asked and returns is in `render_spec`; the render thread's own work in `denoising`; what differs per model
family in its adapter (`consumer/render/families/`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from consumer.core.clock import WallClock, utc_now
from consumer.core.job import StopSignal, past_deadline
from consumer.core.model_families import ModelFamily
from consumer.errors import ModelUnavailable, RenderHandedBack, RenderPreempted, VidgenError
from consumer.memory.modes import MemoryMode
from consumer.memory.profile import ModelMemoryProfile
from consumer.render.checkpointing import supports_checkpoints
from consumer.render.denoising import StepBounds, render_in_mode
from consumer.render.families.base import LoadedModel, Pipelines
from consumer.render.families.easyanimate import EasyAnimateAdapter
from consumer.render.module_sizes import profile_model
from consumer.render.offload import current_mode
from consumer.render.render_spec import ModelHold, ProgressFn, Rendered, RenderSpec, to_uint8
from consumer.render.step_checkpoints import StepCheckpoints

__all__ = ["Renderer", "RendererState"]

log = logging.getLogger(__name__)

RendererState = Literal["starting", "ready", "busy", "failed"]


class Renderer:
    """Load once, render many. `state` makes a broken model a visible failure instead of a hang.

    `load` returns a `LoadedModel` (`consumer.render.loader.load_model`), or a bare pipeline with EasyAnimate's call
    signature (tests' failure modes), served with no family rules."""

    def __init__(
        self,
        load: Callable[[], LoadedModel | Any],
        *,
        device: torch.device | None = None,
        oom_downgrade: bool = True,
        clock: WallClock = utc_now,
    ) -> None:
        self._load = load
        self._clock = clock
        self.device = device or torch.device("cpu")
        self._oom_downgrade = oom_downgrade
        self._model: LoadedModel | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._lock = asyncio.Lock()
        self.state: RendererState = "starting"
        self.failure: str | None = None

    async def start(self) -> None:
        """Load the pipeline; a no-op once loaded (one renderer may serve several workers in tests)."""
        if self._model is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(self._executor, self._load)
        except VidgenError as exc:
            self._fail(exc.message)
            raise
        except Exception as exc:
            self._fail(f"model load failed: {exc!r}")
            raise ModelUnavailable(self.failure or "model load failed") from exc
        if not isinstance(loaded, LoadedModel):
            loaded = LoadedModel(EasyAnimateAdapter(), Pipelines(loaded, loaded), rules=None)
        self._model = loaded
        self.state = "ready"

    @property
    def _pipeline(self) -> Any:
        """The loaded model's main pipeline (memory modes, profile); None before `start`."""
        return None if self._model is None else self._model.pipeline

    @property
    def rules(self) -> ModelFamily | None:
        """What the loaded checkpoint can render (None: no family rules, as for the template renderer)."""
        return None if self._model is None else self._model.rules

    @property
    def model_id(self) -> str | None:
        """The public id the loaded model is served under."""
        return None if self._model is None else self._model.model_id

    async def warm_up(self, width: int, height: int, num_frames: int) -> None:
        """One short render so compilation, kernel autotuning and allocator growth happen before the first job:
        text-to-video, or from a grey start image where the model only does image-to-video."""
        spec = RenderSpec(
            prompt="warm-up",
            negative_prompt="",
            width=width,
            height=height,
            num_frames=num_frames,
            steps=2,
            guidance_scale=5.0,
            seed=0,
        )
        i2v_only = self._model is not None and self._model.pipelines.t2v is None
        image = Image.new("RGB", (width, height), (128, 128, 128)) if i2v_only else None
        started = time.monotonic()
        await self.render(spec, image, timeout_s=3_600)
        log.info("warm-up render %dx%dx%d took %.1fs", width, height, num_frames, time.monotonic() - started)

    @property
    def degraded(self) -> bool:
        """Whether the loaded pipeline renders the simpler kind of video (the template renderer); results say so."""
        return bool(getattr(self._pipeline, "degraded", False))

    def source_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to decode a start image at: the frame's, or larger for a pipeline that resamples it itself
        (it declares `source_size` and is passed the image as `source_image`)."""
        wanted = getattr(self._pipeline, "source_size", None)
        return (width, height) if wanted is None else wanted(width, height)

    @property
    def checkpointable(self) -> bool:
        """Whether the loaded model's renders can be checkpointed and resumed (`consumer.render.checkpointing`)."""
        model = self._model
        return (
            model is not None
            and model.adapter.checkpoints
            and all(supports_checkpoints(each) for each in model.pipelines.each())
        )

    def profile(self) -> ModelMemoryProfile:
        """Weights and dimensions of the loaded model, for memory estimates."""
        if self._model is None:
            raise ModelUnavailable("renderer is not started")
        return profile_model(self._model)

    def held_bytes(self) -> int:
        """Weights the device probe already counts as used: all of them while the model is resident on a GPU."""
        if self.device.type != "cuda" or current_mode(self._pipeline) not in (
            MemoryMode.RESIDENT,
            MemoryMode.VAE_TILING,
        ):
            return 0
        return self.profile().weights_bytes

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def render(
        self,
        spec: RenderSpec,
        image: Image.Image | None,
        *,
        timeout_s: float,
        on_progress: ProgressFn | None = None,
        mode: MemoryMode | None = None,
    ) -> Rendered[NDArray[np.uint8]]:
        """`render_float`, converted to 8-bit RGB frames (off the event loop, after the model is released)."""
        rendered = await self.render_float(spec, image, timeout_s=timeout_s, on_progress=on_progress, mode=mode)
        return Rendered(await asyncio.to_thread(to_uint8, rendered.frames), rendered.mode)

    async def render_float(
        self,
        spec: RenderSpec,
        image: Image.Image | None,
        *,
        timeout_s: float,
        on_progress: ProgressFn | None = None,
        mode: MemoryMode | None = None,
        hold: ModelHold | None = None,
        stop: StopSignal | None = None,
        start_by: datetime | None = None,
        checkpoints: StepCheckpoints | None = None,
    ) -> Rendered[NDArray[np.float32]]:
        """Render in `mode` (None: as the pipeline is) and return as soon as the model is released, with the
        pipeline's frames in [0, 1]. Raises RenderTimeout past the deadline, RenderFailed on a crash; a CUDA
        out-of-memory error is retried once in a more frugal mode first. When the model was taken and released is
        written to `hold`; the renderer calls nothing back but `on_progress` (once per denoising step).

        `stop` (a cancel) raises its reason while the job waits for the model (without waiting on), once it has the
        model, and between denoising steps; past `start_by` (the request's own deadline) when the render would
        start, `Expired` is raised instead of rendering. Either way the model is released at once. `checkpoints` may
        resume the render from a saved state and capture it between steps (and stop it there: paused or handed back,
        `consumer.render.step_checkpoints`)."""
        if self.state == "failed":
            raise ModelUnavailable(f"renderer is broken: {self.failure}")
        model = self._model
        if model is None:
            raise ModelUnavailable("renderer is not started")
        hold = hold or ModelHold()
        loop = asyncio.get_running_loop()
        abandon = threading.Event()
        # CPU-side work stays outside the model's critical section, so it overlaps the previous render.
        prepared = await asyncio.to_thread(model.adapter.prepare, spec, image, model.pipelines)

        def progress(step: int, total: int) -> None:
            if on_progress is not None:
                loop.call_soon_threadsafe(on_progress, step, total)

        async with _model_taken(self._lock, stop):
            if stop is not None:
                stop.check("queued")
            expired = past_deadline(start_by, now=self._clock())
            if expired is not None:
                raise expired
            self.state = "busy"
            hold.taken_at = self._clock()
            started = time.perf_counter()
            future = loop.run_in_executor(
                self._executor,
                # The job's log context and active span follow the work onto the render thread.
                contextvars.copy_context().run,
                functools.partial(
                    render_in_mode,
                    model,
                    self.device,
                    spec,
                    prepared,
                    StepBounds(
                        deadline=time.monotonic() + timeout_s,
                        abandon=abandon,
                        progress=progress,
                        stop=stop,
                        checkpoints=checkpoints,
                    ),
                    mode=mode,
                    oom_downgrade=self._oom_downgrade,
                    fail=self._fail,
                ),
            )
            try:
                frames, used = await future
            except asyncio.CancelledError:
                abandon.set()  # the thread stops at the next denoising step
                raise
            except (RenderPreempted, RenderHandedBack):
                hold.seconds = time.perf_counter() - started  # stopped at a step, to go on later: time it held
                raise
            else:
                hold.seconds = time.perf_counter() - started
                hold.released_at = self._clock()
            finally:
                if self.state == "busy":
                    self.state = "ready"
        return Rendered(frames, used)

    def _fail(self, reason: str) -> None:
        self.state = "failed"
        self.failure = reason
        log.error("renderer failed: %s", reason)


@contextlib.asynccontextmanager
async def _model_taken(lock: asyncio.Lock, stop: StopSignal | None) -> AsyncIterator[None]:
    """The model's lock, held for one render; a job asked to stop while it waits gives up waiting at once."""
    if stop is None:
        await lock.acquire()
    else:
        await stop.acquire(lock)
    try:
        yield
    finally:
        lock.release()
