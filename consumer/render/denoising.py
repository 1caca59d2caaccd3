"""The render thread's work: one run of the model's pipeline (its family adapter makes the call), stopped between
denoising steps (a cancel, the deadline, an abandoned task), its steps reported, and a CUDA out-of-memory error retried
once in a more frugal memory mode. Called by `consumer.render.renderer.Renderer` on its render thread; nothing here
touches the event loop."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from consumer.core.job import StopSignal
from consumer.errors import RenderAbandoned, RenderFailed, RenderTimeout, VidgenError
from consumer.memory.modes import MemoryMode, more_frugal, supported_modes
from consumer.render.families.base import LoadedModel
from consumer.render.offload import apply_mode, current_mode
from consumer.render.render_spec import ProgressFn, RenderSpec
from consumer.render.step_checkpoints import StepCheckpoints

__all__ = ["StepBounds", "denoise", "render_in_mode"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepBounds:
    """What is checked after each denoising step, on the render thread: the task awaiting the render is gone
    (`abandon`), a cancel (`stop`), the deadline (`time.monotonic()`), then the step is reported (`progress`) and the
    render's `checkpoints` decide whether to capture its state (and to stop there: paused or handed back). Steps are
    counted from the render's first, also in a call that resumed from a checkpoint."""

    deadline: float
    abandon: threading.Event
    progress: ProgressFn
    stop: StopSignal | None
    checkpoints: StepCheckpoints | None = None


def render_in_mode(
    model: LoadedModel,
    device: torch.device,
    spec: RenderSpec,
    prepared: object,
    bounds: StepBounds,
    *,
    mode: MemoryMode | None,
    oom_downgrade: bool,
    fail: Callable[[str], None],
) -> tuple[NDArray[np.float32], MemoryMode | None]:
    """Frames in [0, 1] and the memory mode they were rendered in, from what the model's adapter `prepared` (the
    start image, None for text-to-video, or inputs made from it off the render thread): `mode` applied first (None:
    as the pipeline is), and a CUDA out-of-memory error retried once in the next more frugal mode (unless
    `oom_downgrade` is off).
    `fail` is told when a device error leaves the model unusable."""
    pipeline = model.pipeline

    def attempt(in_mode: MemoryMode | None) -> tuple[NDArray[np.float32], MemoryMode | None]:
        if in_mode is not None and current_mode(pipeline) != in_mode:
            apply_mode(pipeline, in_mode, device)
        frames = denoise(model, spec, prepared, bounds, fail=fail)
        return frames, in_mode

    try:
        return attempt(mode)
    except torch.OutOfMemoryError as exc:
        _free_device_memory()
        frugal = more_frugal(mode or current_mode(pipeline)) if oom_downgrade else None
        if frugal is None or frugal not in supported_modes(device.type):
            raise RenderFailed(f"out of device memory: {exc}", code="out_of_memory") from exc
        log.warning("out of memory in mode %s; retrying once in %s", mode, frugal.value)
    try:
        return attempt(frugal)
    except torch.OutOfMemoryError as again:
        _free_device_memory()
        raise RenderFailed(f"out of device memory even in {frugal.value}: {again}", code="out_of_memory") from again


def denoise(
    model: LoadedModel, spec: RenderSpec, prepared: object, bounds: StepBounds, *, fail: Callable[[str], None]
) -> NDArray[np.float32]:
    """One run of the model's pipeline for this kind of request, stopped between denoising steps as `bounds` says;
    resumed from `bounds.checkpoints` when it holds a saved state."""
    cache = model.step_cache
    checkpoints = bounds.checkpoints
    offset = 0 if checkpoints is None else checkpoints.offset
    generator = torch.Generator(device="cpu").manual_seed(spec.seed)

    def on_step(step: int, latents: torch.Tensor | None) -> None:
        done = offset + step + 1  # a resumed call counts its steps from 0
        if cache is not None and done == spec.steps:
            cache.finish()  # the transformer is done: its cached residuals go before the VAE decodes
        if bounds.abandon.is_set():
            raise RenderAbandoned
        if bounds.stop is not None:
            bounds.stop.check("rendering")  # a cancel stops the render here, before the next step
        if time.monotonic() > bounds.deadline:
            raise RenderTimeout(f"render stopped after step {done} of {spec.steps}: deadline passed")
        bounds.progress(done, spec.steps)
        if checkpoints is not None:
            checkpoints.step_ended(done, spec.steps, latents)

    started = time.monotonic()
    if cache is not None:
        cache.begin(spec.steps - offset)  # the steps this call runs: a resumed one starts past the first
    pipeline = model.pipelines.for_kind(prepared)
    attached = contextlib.nullcontext() if checkpoints is None else checkpoints.attached(pipeline, generator)
    try:
        with torch.inference_mode(), attached:
            frames = model.adapter.call(model.pipelines, spec, prepared, on_step, generator)
    except (VidgenError, torch.OutOfMemoryError):
        raise
    except Exception as exc:
        if _is_fatal(exc):
            fail(f"device error while rendering: {exc!r}")
        raise RenderFailed(f"pipeline raised {type(exc).__name__}: {exc}") from exc
    log.debug("render done in %.2fs", time.monotonic() - started)
    return frames


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
