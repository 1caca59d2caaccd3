"""Small named failure modes around the real tiny pipeline (like cog's failing predictors)."""

from __future__ import annotations

import time
from typing import Any

from consumer.render.tiny import build_tiny_pipeline

__all__ = ["CrashingPipeline", "SlowPipeline"]


class _Wrapped:
    """Everything but the call is the inner tiny pipeline's, so memory profiling and admission see a real model."""

    _inner: Any

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SlowPipeline(_Wrapped):
    """The tiny pipeline, with each denoising step held for `step_s` seconds: a long render in miniature."""

    def __init__(self, step_s: float) -> None:
        self._inner = build_tiny_pipeline()
        self._step_s = step_s

    def __call__(self, **kwargs: Any) -> Any:
        callback = kwargs["callback_on_step_end"]

        def slow_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            time.sleep(self._step_s)
            return callback(pipe, step, timestep, tensors)  # type: ignore[no-any-return]

        return self._inner(**{**kwargs, "callback_on_step_end": slow_step})


class CrashingPipeline(_Wrapped):
    """Raises for prompts containing `crash` (a plain bug) or `cuda` (a device error that breaks the process)."""

    def __init__(self) -> None:
        self._inner = build_tiny_pipeline()

    def __call__(self, **kwargs: Any) -> Any:
        prompt = kwargs["prompt"]
        if "cuda" in prompt:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if "crash" in prompt:
            raise ValueError("shapes do not match")
        return self._inner(**kwargs)
