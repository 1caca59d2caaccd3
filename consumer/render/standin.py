"""A stand-in for the model, for benchmarks and fault tests only (`VIDGEN_MODEL=standin`).

It takes the pipeline's arguments, holds its thread for a fixed time spread over the denoising steps (calling the
step callback like the real pipeline, so progress, deadlines and abandonment behave the same), and returns frames
of the requested shape: the start image drifting sideways, or a gradient. Encoding and upload costs stay real.
"""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

__all__ = ["StandInPipeline"]


class StandInPipeline:
    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s

    def to(self, *_: Any, **__: Any) -> StandInPipeline:
        return self

    def set_progress_bar_config(self, **_: Any) -> None:
        """Nothing to configure; present so the loader treats it like a pipeline."""

    def __call__(
        self,
        *,
        num_frames: int,
        height: int,
        width: int,
        num_inference_steps: int,
        video: torch.Tensor,
        generator: torch.Generator,
        callback_on_step_end: Any,
        **_: Any,
    ) -> SimpleNamespace:
        started = time.monotonic()
        frames = (num_frames - 1) // 4 * 4 + 1  # the real VAE's 4x temporal grid
        output = self._frames(video, generator, frames, height, width)
        # The hold includes making the frames: the call takes hold_s in all, like a GPU render would.
        for step in range(num_inference_steps):
            time.sleep(max(0.0, started + self.hold_s * (step + 1) / num_inference_steps - time.monotonic()))
            callback_on_step_end(self, step, None, {})
        return SimpleNamespace(frames=output)

    @staticmethod
    def _frames(video: torch.Tensor, generator: torch.Generator, frames: int, height: int, width: int) -> Any:
        # (1, 3, F, H, W) in [0, 1]: the start frame, or zeros for text-to-video.
        start = video[0, :, 0].permute(1, 2, 0).numpy().astype(np.float32)
        if not start.any():
            seed = int(generator.initial_seed()) % 255
            start = np.broadcast_to(np.linspace(0, 1, width, dtype=np.float32)[None, :, None], (height, width, 3))
            start = (start + seed / 255) % 1.0
        shifts = [np.roll(start, 4 * index, axis=1) for index in range(frames)]
        return np.stack(shifts)[None]
