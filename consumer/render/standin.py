"""A stand-in for the model, for benchmarks and fault tests only (`VIDGEN_MODEL=standin`).

It takes the pipeline's arguments, holds its thread for a fixed time spread over the denoising steps (calling the
step callback like the real pipeline, so progress, deadlines and abandonment behave the same), and returns frames
of the requested shape: the start image drifting sideways, or a gradient. Encoding and upload costs stay real.

Its renders can be checkpointed like a model's (`checkpoint_access`): the state between two steps is its latents,
shaped as EasyAnimate's are for the request (so a checkpoint weighs what a real one does), and the step reached; a
resumed call holds its thread only for the steps left and returns the same frames.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from PIL import Image

from consumer.errors import CheckpointRejected
from consumer.render.checkpointing import RenderState

__all__ = ["StandInPipeline"]

_LATENT_CHANNELS = 16  # EasyAnimate V5.1's VAE: 16 channels, 8x spatial and 4x temporal compression


class StandInPipeline:
    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._resume: RenderState | None = None

    def to(self, *_: Any, **__: Any) -> StandInPipeline:
        return self

    def set_progress_bar_config(self, **_: Any) -> None:
        """Nothing to configure; present so the loader treats it like a pipeline."""

    def checkpoint_access(self, generator: torch.Generator | None) -> _StandInState:
        """How a render's state is read and put back (`consumer.render.checkpointing.StateAccess`)."""
        return _StandInState(self)

    def __call__(
        self,
        *,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        source_image: Image.Image | None,
        generator: torch.Generator,
        callback_on_step_end: Any,
        **_: Any,
    ) -> SimpleNamespace:
        started = time.monotonic()
        frames = (num_frames - 1) // 4 * 4 + 1  # the real VAE's 4x temporal grid
        output = self._frames(source_image, generator, frames, height, width)
        shape = (1, _LATENT_CHANNELS, (frames - 1) // 4 + 1, height // 8, width // 8)
        latents = torch.randn(shape, generator=generator)
        first = 0
        if self._resume is not None:
            if tuple(self._resume.latents.shape) != shape or self._resume.total_steps != num_inference_steps:
                raise CheckpointRejected("the checkpoint is of another render")
            latents, first = self._resume.latents.clone(), self._resume.steps_done
        # The hold includes making the frames: the call takes hold_s in all (the steps left of it when resumed).
        for index in range(num_inference_steps - first):  # a resumed call counts its steps from 0, as diffusers does
            latents.mul_(0.98).add_(0.01)
            time.sleep(max(0.0, started + self.hold_s * (index + 1) / num_inference_steps - time.monotonic()))
            callback_on_step_end(self, index, None, {"latents": latents})
        return SimpleNamespace(frames=output)

    @staticmethod
    def source_size(width: int, height: int) -> tuple[int, int]:
        """The start image is decoded at the frame's size and passed as `source_image` (no start video to build)."""
        return width, height

    @staticmethod
    def _frames(image: Image.Image | None, generator: torch.Generator, frames: int, height: int, width: int) -> Any:
        if image is not None:  # (H, W, 3) in [0, 1]
            start = np.asarray(image.convert("RGB").resize((width, height)), dtype=np.float32) / 255
        else:  # text-to-video: a gradient, shifted by the seed
            seed = int(generator.initial_seed()) % 255
            start = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32)[None, :, None], (height, width, 3))
            start = (start + seed / 255) % 1.0
        shifts = [np.roll(start, 4 * index, axis=1) for index in range(frames)]
        return np.stack(shifts)[None]


class _StandInState:
    """The stand-in's `StateAccess`: its latents and the step reached."""

    def __init__(self, pipeline: StandInPipeline) -> None:
        self._pipeline = pipeline

    def tapped(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def capture(self, steps_done: int, total_steps: int, latents: torch.Tensor) -> RenderState:
        return RenderState(steps_done, total_steps, latents.detach().clone(), scheduler={}, generator=None)

    @contextlib.contextmanager
    def resuming(self, state: RenderState) -> Iterator[None]:
        self._pipeline._resume = state
        try:
            yield
        finally:
            self._pipeline._resume = None
