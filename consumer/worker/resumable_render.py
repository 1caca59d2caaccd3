"""One job's render across its interruptions: resumed from a stored checkpoint if one fits, paused for an interactive
request and resumed from memory, handed back with its state stored. The job pipeline calls `render_resumably` where it
would render; the job's attempts provide the `PauseGate` (slot, memory) a paused render waits at.

- A stored checkpoint is looked up first; if the render refuses it after all (a shape or schedule the header did not
  reveal), it is deleted and the render starts from its first step.
- `RenderPreempted`: the state stays in memory; the gate gives the render slot and memory back, waits until the
  scheduler gives a slot again and memory is admitted, and the render resumes in the memory mode admission chose.
- `RenderHandedBack` (at a step, at the model, or while paused): the newest state not yet stored is stored, then the
  error goes up and the job ends unanswered; its next owner resumes from the stored state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from consumer.core.job import Job
from consumer.errors import CheckpointRejected, RenderHandedBack, RenderPreempted
from consumer.memory.modes import MemoryMode
from consumer.render.checkpointing import RenderState
from consumer.render.render_spec import Rendered
from consumer.render.step_checkpoints import CheckpointSignals, StepCheckpoints
from consumer.worker.checkpoint_store import JobCheckpoints

__all__ = ["PauseGate", "RenderCall", "render_resumably"]

RenderCall = Callable[[StepCheckpoints | None, MemoryMode | None], Awaitable[Rendered[NDArray[np.float32]]]]
"""One call of the renderer with these checkpoints, in this memory mode."""


class PauseGate(Protocol):
    """Where a paused render waits: its render slot and memory reservation are given up, and it returns the memory
    mode to resume in once it has both again; it raises the job's stop reason (a cancel) or `RenderHandedBack`."""

    async def paused(self) -> MemoryMode | None: ...


async def render_resumably(
    render: RenderCall,
    *,
    job: Job,
    checkpoints: JobCheckpoints | None,
    pauses: PauseGate | None,
    mode: MemoryMode | None,
) -> Rendered[NDArray[np.float32]]:
    """The render's frames, however often it was interrupted on the way."""
    if checkpoints is None:
        return await render(None, mode)
    stored = await checkpoints.load()
    resume = None if stored is None else stored.state
    source = "store"
    unsaved: RenderState | None = None  # the paused state, kept only in memory
    signals = CheckpointSignals(
        pause=lambda: pauses is not None and job.preemption.requested, hand_back=lambda: job.stop.handing_back
    )
    try:
        while True:
            session = checkpoints.session(resume=resume, signals=signals)
            if resume is not None:
                checkpoints.resuming(resume, source=source, written_by=None if stored is None else stored.trace)
            try:
                return await render(session, mode)
            except CheckpointRejected:
                if resume is None or source != "store":
                    raise
                await checkpoints.discard()
                resume = stored = None
            except RenderPreempted:
                if session.interrupted is None or pauses is None:
                    raise
                unsaved = resume = session.interrupted
                source, stored = "memory", None
                await checkpoints.stop_uploads()
                checkpoints.paused(resume)
                mode = await pauses.paused()
            except RenderHandedBack:
                unsaved = session.interrupted or unsaved
                raise
    except RenderHandedBack:
        if unsaved is not None:
            await checkpoints.hand_back(unsaved)
        raise
    finally:
        await checkpoints.stop_uploads()
