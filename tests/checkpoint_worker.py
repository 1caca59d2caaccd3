"""A real worker process with the tiny model whose denoising steps take a set time, for the checkpoint tests:
`python -m tests.checkpoint_worker STEP_S`.

It runs `consumer.worker.wiring.serve` exactly as `vidgen run` does (settings from `VIDGEN_*`, SIGTERM drains); the
only difference is the tiny pipeline's scheduler, whose `step` sleeps `STEP_S` before each step (the numbers are
untouched), so a test can stop or kill the worker in the middle of a render."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import time
from typing import Any

from consumer.render.renderer import Renderer
from consumer.render.tiny import build_tiny_pipeline
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging
from consumer.worker.wiring import serve


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
    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    renderer = Renderer(lambda: slow_tiny_pipeline(step_s))

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await serve(settings, stop, renderer=renderer)

    try:
        return asyncio.run(run())
    finally:
        renderer.close()


if __name__ == "__main__":
    sys.exit(main())
