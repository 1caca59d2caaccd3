"""The renderer: one pipeline, loaded once, run on a dedicated thread so the event loop keeps polling Kafka."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import torch
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
from numpy.typing import NDArray
from PIL import Image

from consumer.core.clock import WallClock, utc_now
from consumer.core.job import StopSignal, past_deadline
from consumer.errors import ModelUnavailable, RenderFailed, RenderTimeout, VidgenError
from consumer.memory.modes import MemoryMode, more_frugal, supported_modes
from consumer.memory.profile import ModelMemoryProfile
from consumer.render.module_sizes import profile_pipeline
from consumer.render.offload import apply_mode, current_mode

__all__ = ["ModelHold", "ProgressFn", "RenderSpec", "Rendered", "Renderer", "RendererState", "to_uint8"]

log = logging.getLogger(__name__)

RendererState = Literal["starting", "ready", "busy", "failed"]
ProgressFn = Callable[[int, int], None]
_Frames = TypeVar("_Frames", NDArray[np.float32], NDArray[np.uint8])
# The start video and its mask (None for a pipeline that resamples the start image itself), the start image.
_Inputs = tuple[torch.Tensor | None, torch.Tensor | None, Image.Image | None]


@dataclass(frozen=True)
class RenderSpec:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    steps: int
    guidance_scale: float
    seed: int


@dataclass(frozen=True)
class Rendered(Generic[_Frames]):
    frames: _Frames  # (F, H, W, 3): floats in [0, 1] from `render_float`, 8-bit RGB from `render`
    mode: MemoryMode | None  # the memory mode it ran in (None: modes not managed, e.g. the stand-in)


@dataclass
class ModelHold:
    """When one render held the model, written by the renderer as it happens: `taken_at` once the model is taken
    (after any wait for the previous render; set even if the render then fails), `released_at` and `seconds` once
    a render that succeeded gives it back."""

    taken_at: datetime | None = None
    released_at: datetime | None = None
    seconds: float | None = None


class _RenderStopped(Exception):
    """Raised inside the pipeline's step callback when the job waiting for the render was cancelled."""


class Renderer:
    """Load once, render many. `state` makes a broken model a visible failure instead of a hang."""

    def __init__(
        self,
        load: Callable[[], Any],
        *,
        device: torch.device | None = None,
        oom_downgrade: bool = True,
        clock: WallClock = utc_now,
    ) -> None:
        self._load = load
        self._clock = clock
        self.device = device or torch.device("cpu")
        self._oom_downgrade = oom_downgrade
        self._pipeline: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")
        self._lock = asyncio.Lock()
        self.state: RendererState = "starting"
        self.failure: str | None = None

    async def start(self) -> None:
        """Load the pipeline; a no-op once loaded (one renderer may serve several workers in tests)."""
        if self._pipeline is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            self._pipeline = await loop.run_in_executor(self._executor, self._load)
        except VidgenError as exc:
            self._fail(exc.message)
            raise
        except Exception as exc:
            self._fail(f"model load failed: {exc!r}")
            raise ModelUnavailable(self.failure or "model load failed") from exc
        self.state = "ready"

    async def warm_up(self, width: int, height: int, num_frames: int) -> None:
        """One short render so compilation, kernel autotuning and allocator growth happen before the first job."""
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
        started = time.monotonic()
        await self.render(spec, None, timeout_s=3_600)
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
    def _resamples_start_image(self) -> bool:
        """Whether the pipeline takes the start image itself (`source_image`) rather than a start video."""
        return hasattr(self._pipeline, "source_size")

    def profile(self) -> ModelMemoryProfile:
        """Weights and dimensions of the loaded pipeline, for memory estimates."""
        return profile_pipeline(self._pipeline)

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
    ) -> Rendered[NDArray[np.float32]]:
        """Render in `mode` (None: as the pipeline is) and return as soon as the model is released, with the
        pipeline's frames in [0, 1]. Raises RenderTimeout past the deadline, RenderFailed on a crash; a CUDA
        out-of-memory error is retried once in a more frugal mode first. When the model was taken and released is
        written to `hold`; the renderer calls nothing back but `on_progress` (once per denoising step).

        `stop` (a cancel) raises its reason while the job waits for the model (without waiting on), once it has the
        model, and between denoising steps; past `start_by` (the request's own deadline) when the render would
        start, `Expired` is raised instead of rendering. Either way the model is released at once."""
        if self.state == "failed":
            raise ModelUnavailable(f"renderer is broken: {self.failure}")
        hold = hold or ModelHold()
        loop = asyncio.get_running_loop()
        abandon = threading.Event()
        inputs: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        if not self._resamples_start_image:  # else a frame-sized start video would only take memory (12 B/pixel)
            # CPU-side work stays outside the model's critical section, so it overlaps the previous render.
            inputs = await asyncio.to_thread(
                get_image_to_video_latent, image, None, spec.num_frames, (spec.height, spec.width)
            )

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
                    self._render_sync,
                    spec,
                    (*inputs, image),
                    deadline=time.monotonic() + timeout_s,
                    abandon=abandon,
                    progress=progress,
                    mode=mode,
                    stop=stop,
                ),
            )
            try:
                frames, used = await future
                hold.seconds = time.perf_counter() - started
                hold.released_at = self._clock()
            except asyncio.CancelledError:
                abandon.set()  # the thread stops at the next denoising step
                raise
            finally:
                if self.state == "busy":
                    self.state = "ready"
        return Rendered(frames, used)

    def _render_sync(
        self,
        spec: RenderSpec,
        inputs: _Inputs,
        *,
        deadline: float,
        abandon: threading.Event,
        progress: ProgressFn,
        mode: MemoryMode | None,
        stop: StopSignal | None,
    ) -> tuple[NDArray[np.float32], MemoryMode | None]:
        """Frames in [0, 1] and the memory mode they were rendered in."""

        def attempt(in_mode: MemoryMode | None) -> tuple[NDArray[np.float32], MemoryMode | None]:
            if in_mode is not None and current_mode(self._pipeline) != in_mode:
                apply_mode(self._pipeline, in_mode, self.device)
            frames = self._denoise(spec, inputs, deadline=deadline, abandon=abandon, progress=progress, stop=stop)
            return frames, in_mode

        try:
            return attempt(mode)
        except torch.OutOfMemoryError as exc:
            _free_device_memory()
            frugal = more_frugal(mode or current_mode(self._pipeline)) if self._oom_downgrade else None
            if frugal is None or frugal not in supported_modes(self.device.type):
                raise RenderFailed(f"out of device memory: {exc}", code="out_of_memory") from exc
            log.warning("out of memory in mode %s; retrying once in %s", mode, frugal.value)
        try:
            return attempt(frugal)
        except torch.OutOfMemoryError as again:
            _free_device_memory()
            raise RenderFailed(f"out of device memory even in {frugal.value}: {again}", code="out_of_memory") from again

    def _denoise(
        self,
        spec: RenderSpec,
        inputs: _Inputs,
        *,
        deadline: float,
        abandon: threading.Event,
        progress: ProgressFn,
        stop: StopSignal | None,
    ) -> NDArray[np.float32]:
        video, mask, image = inputs
        # A pipeline that resamples the start image itself gets it at the size it asked for (`source_size`).
        source = {"source_image": image} if self._resamples_start_image else {}

        def on_step_end(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if abandon.is_set():
                raise _RenderStopped
            if stop is not None:
                stop.check("rendering")  # a cancel stops the render here, before the next step
            if time.monotonic() > deadline:
                raise RenderTimeout(f"render stopped after step {step + 1} of {spec.steps}: deadline passed")
            progress(step + 1, spec.steps)
            return tensors

        started = time.monotonic()
        try:
            with torch.inference_mode():
                output = self._pipeline(
                    prompt=spec.prompt,
                    # None crashes encode_prompt when guidance > 1; an empty prompt is the neutral choice.
                    negative_prompt=spec.negative_prompt,
                    num_frames=spec.num_frames,
                    video=video,
                    mask_video=mask,
                    height=spec.height,
                    width=spec.width,
                    num_inference_steps=spec.steps,
                    guidance_scale=spec.guidance_scale,
                    generator=torch.Generator(device="cpu").manual_seed(spec.seed),
                    output_type="np",
                    callback_on_step_end=on_step_end,
                    **source,
                )
        except (VidgenError, _RenderStopped, torch.OutOfMemoryError):
            raise
        except Exception as exc:
            if _is_fatal(exc):
                self._fail(f"device error while rendering: {exc!r}")
            raise RenderFailed(f"pipeline raised {type(exc).__name__}: {exc}") from exc
        log.debug("render done in %.2fs", time.monotonic() - started)
        frames: NDArray[np.float32] = output.frames[0]
        return frames

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


def to_uint8(frames: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Pipeline output in [0, 1] (F, H, W, 3) to 8-bit RGB."""
    # A float32 temporary of one frame at a time, rounded and clipped in place: a third less time than chained
    # temporaries, and no second float copy of the whole video (a 1024x1024x49 one is 617 MB).
    converted = np.empty(frames.shape, dtype=np.uint8)
    scaled = np.empty(frames.shape[1:], dtype=np.float32)
    for index in range(frames.shape[0]):
        np.multiply(frames[index], 255.0, out=scaled, dtype=np.float32)
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        converted[index] = scaled
    return converted


def _free_device_memory() -> None:
    gc.collect()  # the failed step's tensors are only unreachable once the traceback frames are gone
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_fatal(exc: Exception) -> bool:
    """A CUDA error other than OOM leaves the context unusable: only a process restart recovers."""
    if isinstance(exc, torch.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", ())
    return isinstance(exc, accelerator_error) or "CUDA error" in str(exc)
