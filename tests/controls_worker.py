"""A real worker process with a fault pipeline, for the crash-guard tests: `python -m tests.controls_worker`.

It runs `consumer.worker.wiring.serve` exactly as `vidgen run` does (settings from `VIDGEN_*`, SIGTERM drains), with one
difference: the renderer's pipeline is the stand-in (`VIDGEN_STANDIN_RENDER_S` per render) that kills its own
process with SIGKILL at the first denoising step of a prompt containing `POISON`, as a native crash in a codec or
driver, a CUDA fatal error or the kernel's OOM killer would: no answer, no commit, no goodbye to the group.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from consumer.render.standin import StandInPipeline
from tests.worker_main import serve_with

POISON = "POISON"


class KillingPipeline(StandInPipeline):
    """The stand-in, whose process a poison prompt kills at its first denoising step."""

    def __call__(self, **kwargs: Any) -> Any:
        if POISON in kwargs["prompt"]:
            kwargs["callback_on_step_end"] = _die
        return super().__call__(**kwargs)


def _die(*_: Any) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError("SIGKILL returned")


def main() -> int:
    return serve_with(lambda settings: KillingPipeline(settings.standin_render_s))


if __name__ == "__main__":
    sys.exit(main())
