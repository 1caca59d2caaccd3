"""Errors internal to the worker that no request is ever answered with: they end work whose answer is no longer
awaited."""

from __future__ import annotations

from consumer.errors.root import VidgenError

__all__ = ["RenderAbandoned"]


class RenderAbandoned(VidgenError):
    """Raised on the render thread at the next denoising step once the task waiting for the render was cancelled
    (shutdown past the grace, a revoked partition): nobody awaits the frames, and the record is read again."""

    code = "render_abandoned"
    in_results = False

    def __init__(self, message: str = "the task awaiting this render was cancelled") -> None:
        super().__init__(message)
