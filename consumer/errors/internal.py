"""Errors internal to the worker: a render nobody awaits any more, a job moved against its lifecycle (a bug)."""

from __future__ import annotations

from consumer.errors.root import VidgenError

__all__ = ["IllegalTransition", "RenderAbandoned"]


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
