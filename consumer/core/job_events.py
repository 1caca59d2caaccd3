"""What a running job tells the scheduler: typed events on the scheduler's one queue (a render ended, a denoising
step ended), and the job's lifecycle moved where its work happens. Pure: the queue is anything with `put_nowait`.

The job runner makes one `JobTrack` per job and hands it to the pipeline, which calls it as the job's work moves on;
nothing is called back across the scheduler. The scheduler reacts to the events in turn: a render slot to the next
job, a step to the progress listeners.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Protocol

from consumer.core.job import Job
from consumer.core.lifecycle import Phase

__all__ = ["JobEvent", "JobEventSink", "JobTrack", "RenderEnded", "RenderProgress"]


@dataclass(frozen=True)
class RenderEnded:
    """A job no longer needs the model: its render ended, a cache hit made it unnecessary, or its answer is final
    without one. The scheduler hands the job's render slot to the next job. Posted once per job."""

    job: Job


@dataclass(frozen=True)
class RenderProgress:
    """Denoising step `step` of `total` of the job's render ended. `context` is the one it ended in (the render's
    trace span, the job's log fields), for the listeners to run in: a progress event carries the job's trace."""

    job: Job
    step: int
    total: int
    context: contextvars.Context = field(default_factory=contextvars.copy_context, compare=False)


JobEvent = RenderEnded | RenderProgress


class JobEventSink(Protocol):
    """The scheduler's event queue, as a job sees it."""

    def put_nowait(self, item: JobEvent, /) -> None: ...


class JobTrack:
    """One job's side of the scheduler's queue: each call moves the job's lifecycle (`consumer.core.lifecycle`) and
    posts what the scheduler reacts to. On the event loop."""

    def __init__(self, job: Job, events: JobEventSink) -> None:
        self.job = job
        self._events = events
        self._render_posted = False

    def start(self) -> None:
        """An attempt begins (the first, or a retry from wherever the previous one got to)."""
        self.job.lifecycle.advance(Phase.STARTED)

    def rendering(self) -> None:
        """The attempt waits for the model, then renders."""
        self.job.lifecycle.advance(Phase.RENDERING)

    def progress(self, step: int, total: int) -> None:
        """A denoising step ended."""
        self._events.put_nowait(RenderProgress(self.job, step, total))

    def render_ended(self) -> None:
        """The job no longer needs the model; a no-op once it is past its render. `RenderEnded` is posted the first
        time only: a retried attempt that renders again keeps the slot it moved to."""
        if self.job.lifecycle.past_render:
            return
        self.job.lifecycle.advance(Phase.RENDER_ENDED)
        if not self._render_posted:
            self._render_posted = True
            self._events.put_nowait(RenderEnded(self.job))

    def encoding(self) -> None:
        self.job.lifecycle.advance(Phase.ENCODING)

    def uploading(self) -> None:
        self.job.lifecycle.advance(Phase.UPLOADING)
