"""The main of the test worker processes (`tests.controls_worker`, `tests.checkpoint_worker`): settings from
`VIDGEN_*`, logging, SIGTERM and SIGINT drain, `consumer.worker.wiring.serve` exactly as `vidgen run` runs it, with the
renderer's pipeline the test's own."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from consumer.render.renderer import Renderer
from consumer.settings import Settings
from consumer.telemetry.logs import configure_logging
from consumer.worker.wiring import serve

__all__ = ["serve_with"]


def serve_with(make_pipeline: Callable[[Settings], Any]) -> int:
    """Run a worker whose renderer loads `make_pipeline(settings)`; its exit code."""
    settings = Settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    renderer = Renderer(lambda: make_pipeline(settings))

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
