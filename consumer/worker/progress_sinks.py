"""A plain callback as a progress listener: the demo's progress bar and the tests' record of a render's steps."""

from __future__ import annotations

import functools
from collections.abc import Callable

from consumer.core.job_events import Milestone
from consumer.worker.job_ports import StepFn
from schemas.events import ProgressPhase, VideoRequest

__all__ = ["ProgressSink", "SinkProgress"]

ProgressSink = Callable[[str, int, int], None]
"""(request_id, step, total) after each denoising step: the demo's progress bar, the tests' record of steps."""


class SinkProgress:
    """A `ProgressSink` as a `ProgressListener`."""

    def __init__(self, sink: ProgressSink) -> None:
        self._sink = sink

    def started(self, request: VideoRequest, *, attempt: int) -> StepFn:
        return functools.partial(self._sink, request.request_id)

    def milestone(self, request: VideoRequest, milestone: Milestone, *, step: int, total: int, attempt: int) -> None:
        """A sink hears steps only (a resumed render's steps count from its first, so they continue where it was)."""

    def phase(self, request: VideoRequest, phase: ProgressPhase, *, attempt: int) -> None:
        """A sink hears denoising steps only."""
