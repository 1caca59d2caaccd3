"""One render's checkpoints, on the render thread: after each denoising step, whether to capture the state and what
for. Made by the job pipeline on the event loop and handed to the renderer with the render; nothing here touches the
event loop but the thread-safe `saved` callback.

After step `done` of `total` (never after the last: the frames are nearly there):
- the job hands its record back (a shutdown, a revoked partition): capture, keep it as `interrupted`, raise
  `RenderHandedBack`; the job pipeline stores it before the job ends unanswered;
- the render is preempted for a waiting interactive request: capture, keep it as `interrupted`, raise `RenderPreempted`;
  the job keeps it in memory and resumes from it when it has the model again;
- `interval_s` (> 0) passed since the render started or was last captured: capture and hand it to `saved` (uploaded
  in the background while the render goes on).
A capture copies the latents and the scheduler's state to the CPU: milliseconds, well under one step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from consumer.errors import CheckpointRejected, RenderHandedBack, RenderPreempted
from consumer.render.checkpointing import RenderState, StateAccess, state_access

__all__ = ["CheckpointSignals", "StepCheckpoints"]


@dataclass(frozen=True)
class CheckpointSignals:
    """What the render thread reads between steps (plain attribute reads; set on the event loop)."""

    pause: Callable[[], bool]
    hand_back: Callable[[], bool]


class StepCheckpoints:
    """A render's checkpoints: the state it resumes from (`resume`, its step is `offset`), the state it was interrupted
    at (`interrupted`), and the periodic captures it hands to `saved`."""

    def __init__(
        self,
        *,
        resume: RenderState | None,
        interval_s: float,
        signals: CheckpointSignals,
        saved: Callable[[RenderState], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resume = resume
        self.interrupted: RenderState | None = None
        self._interval_s = interval_s
        self._signals = signals
        self._saved = saved
        self._clock = clock
        self._access: StateAccess | None = None
        self._last = clock()

    @property
    def offset(self) -> int:
        """Steps done before this call: the pipeline's step index restarts at 0 in a resumed call."""
        return 0 if self.resume is None else self.resume.steps_done

    @contextmanager
    def attached(self, pipeline: Any, generator: torch.Generator | None) -> Iterator[None]:
        """Around the pipeline's call: capture what it needs, and resume from `resume` if there is one."""
        access = state_access(pipeline, generator)
        if access is None:
            if self.resume is not None:
                raise CheckpointRejected(f"{type(pipeline).__name__} cannot resume a checkpoint")
            yield
            return
        with ExitStack() as stack:
            stack.enter_context(access.tapped())
            if self.resume is not None:
                stack.enter_context(access.resuming(self.resume))
            self._access = access
            self._last = self._clock()
            try:
                yield
            finally:
                self._access = None

    def step_ended(self, done: int, total: int, latents: torch.Tensor | None) -> None:
        """After step `done` of `total`: capture as the signals and the interval say; may raise `RenderHandedBack` or
        `RenderPreempted` (the pipeline's call ends there, its state in `interrupted`)."""
        if self._access is None or latents is None or done >= total:
            return
        if self._signals.hand_back():
            self.interrupted = self._access.capture(done, total, latents)
            raise RenderHandedBack(f"handed back after step {done} of {total}")
        if self._signals.pause():
            self.interrupted = self._access.capture(done, total, latents)
            raise RenderPreempted(f"paused after step {done} of {total}")
        now = self._clock()
        if self._interval_s > 0 and now - self._last >= self._interval_s:
            self._last = now
            self._saved(self._access.capture(done, total, latents))
