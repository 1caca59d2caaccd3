"""The render thread's work: one run of the diffusers pipeline, stopped between denoising steps (a cancel, the
deadline, an abandoned task), its steps reported, and a CUDA out-of-memory error retried once in a more frugal memory
mode. Called by `consumer.render.renderer.Renderer` on its render thread; nothing here touches the event loop."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from consumer.core.job import StopSignal
from consumer.errors import RenderAbandoned, RenderFailed, RenderTimeout, VidgenError
from consumer.memory.modes import MemoryMode, more_frugal, supported_modes
from consumer.render.offload import apply_mode, current_mode
from consumer.render.render_spec import ProgressFn, RenderSpec

__all__ = ["Inputs", "StepBounds", "denoise", "render_in_mode"]

log = logging.getLogger(__name__)

Inputs = tuple[torch.Tensor | None, torch.Tensor | None, Image.Image | None]
"""The start video and its mask (None for a pipeline that resamples the start image itself), the start image."""


@dataclass(frozen=True)
class StepBounds:
    """What is checked after each denoising step, on the render thread: the task awaiting the render is gone
    (`abandon`), a cancel (`stop`), the deadline (`time.monotonic()`), then the step is reported (`progress`)."""

    deadline: float
    abandon: threading.Event
    progress: ProgressFn
    stop: StopSignal | None


def render_in_mode(
    pipeline: Any,
    device: torch.device,
    spec: RenderSpec,
    inputs: Inputs,
    bounds: StepBounds,
    *,
    mode: MemoryMode | None,
    oom_downgrade: bool,
    fail: Callable[[str], None],
) -> tuple[NDArray[np.float32], MemoryMode | None]:
    """Frames in [0, 1] and the memory mode they were rendered in: `mode` applied first (None: as the pipeline is),
    and a CUDA out-of-memory error retried once in the next more frugal mode (unless `oom_downgrade` is off).
    `fail` is told when a device error leaves the model unusable."""

    def attempt(in_mode: MemoryMode | None) -> tuple[NDArray[np.float32], MemoryMode | None]:
        if in_mode is not None and current_mode(pipeline) != in_mode:
            apply_mode(pipeline, in_mode, device)
        frames = denoise(pipeline, spec, inputs, bounds, fail=fail)
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
    pipeline: Any, spec: RenderSpec, inputs: Inputs, bounds: StepBounds, *, fail: Callable[[str], None]
) -> NDArray[np.float32]:
    """One run of the pipeline, stopped between denoising steps as `bounds` says."""
    video, mask, image = inputs
    # A pipeline that resamples the start image itself gets it at the size it asked for (`source_size`).
    source = {"source_image": image} if hasattr(pipeline, "source_size") else {}

    def on_step_end(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if bounds.abandon.is_set():
            raise RenderAbandoned
        if bounds.stop is not None:
            bounds.stop.check("rendering")  # a cancel stops the render here, before the next step
        if time.monotonic() > bounds.deadline:
            raise RenderTimeout(f"render stopped after step {step + 1} of {spec.steps}: deadline passed")
        bounds.progress(step + 1, spec.steps)
        return tensors

    started = time.monotonic()
    try:
        with torch.inference_mode():
            output = pipeline(
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
    except (VidgenError, torch.OutOfMemoryError):
        raise
    except Exception as exc:
        if _is_fatal(exc):
            fail(f"device error while rendering: {exc!r}")
        raise RenderFailed(f"pipeline raised {type(exc).__name__}: {exc}") from exc
    log.debug("render done in %.2fs", time.monotonic() - started)
    frames: NDArray[np.float32] = output.frames[0]
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
