"""Errors internal to the worker: a render nobody awaits any more, a render interrupted at a step boundary (paused for
a waiting request, or handed back to the group with its checkpoint), a checkpoint that does not fit its render, a job
moved against its lifecycle (a bug)."""

from __future__ import annotations

from consumer.errors.root import VidgenError

__all__ = ["CheckpointRejected", "IllegalTransition", "RenderAbandoned", "RenderHandedBack", "RenderPreempted"]


class RenderAbandoned(VidgenError):
    """Raised on the render thread at the next denoising step once the task waiting for the render was cancelled
    (shutdown past the grace, a revoked partition): nobody awaits the frames, and the record is read again."""

    code = "render_abandoned"
    in_results = False

    def __init__(self, message: str = "the task awaiting this render was cancelled") -> None:
        super().__init__(message)


class IllegalTransition(VidgenError):
    """A job was moved to a phase its lifecycle does not allow from where it is (`consumer.core.lifecycle`): a bug in
    the worker, never the request's fault. Answered `internal_error` if it happens while the job runs."""


class RenderPreempted(VidgenError):
    """Raised on the render thread at a step boundary when the render is preempted for a waiting interactive request:
    its state was captured there and is kept in memory until the render resumes (`consumer.render.step_checkpoints`)."""

    code = "render_preempted"
    in_results = False

    def __init__(self, message: str = "the render was paused for a waiting interactive request") -> None:
        super().__init__(message)


class RenderHandedBack(VidgenError):
    """The job gives its record back to the group unanswered, its render checkpointed (a shutdown or a revoked
    partition): raised at the render's next step boundary, or while the job waits for the model or its turn. The next
    owner resumes from the checkpoint."""

    code = "render_handed_back"
    in_results = False

    def __init__(self, message: str = "the render was handed back to the group with its checkpoint") -> None:
        super().__init__(message)


class CheckpointRejected(VidgenError):
    """A stored checkpoint does not fit the render it was found for (another request, model or code version, or a
    malformed object): it is deleted and the render starts from its first step."""

    code = "checkpoint_rejected"
    in_results = False
