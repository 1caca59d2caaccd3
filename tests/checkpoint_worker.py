"""A real worker process with the tiny model whose denoising steps take a set time, for the checkpoint tests:
`python -m tests.checkpoint_worker STEP_S`.

It runs `consumer.worker.wiring.serve` exactly as `vidgen run` does (settings from `VIDGEN_*`, SIGTERM drains); the
only difference is the tiny pipeline's scheduler, whose `step` sleeps `STEP_S` before each step (the numbers are
untouched), so a test can stop or kill the worker in the middle of a render."""

from __future__ import annotations

import functools
import sys
import time
from typing import Any

from consumer.render.tiny import build_tiny_pipeline
from tests.worker_main import serve_with


def slow_tiny_pipeline(step_s: float) -> Any:
    """The tiny pipeline, each of its denoising steps made to last at least `step_s`."""
    pipeline = build_tiny_pipeline()
    scheduler = pipeline.scheduler
    original = scheduler.step

    @functools.wraps(original)  # pipelines inspect step's signature
    def step(*args: Any, **kwargs: Any) -> Any:
        time.sleep(step_s)
        return original(*args, **kwargs)

    scheduler.step = step
    return pipeline


def main() -> int:
    step_s = float(sys.argv[1])
    return serve_with(lambda _settings: slow_tiny_pipeline(step_s))


if __name__ == "__main__":
    sys.exit(main())
