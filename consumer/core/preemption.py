"""Preemption: a bulk render pauses at its next denoising step for an interactive request waiting for the model, and
resumes later from where it paused. Pure.

- `Preemption` is one job's side: the pause request (a plain attribute the render thread reads between steps), how
  many times it was paused, and the resume grant the scheduler gives it with a render slot.
- `PreemptionPolicy` is the scheduler's rule for pausing the bulk render that holds the model:
  preemption is on; the render was paused fewer than `max_preemptions` times (`VIDGEN_MAX_PREEMPTIONS`), so every
  bulk render finishes after a bounded number of pauses; more than one step is left (pausing the last step saves
  nothing); and the lane policy does not owe bulk its minimum share (`VIDGEN_BULK_MIN_SHARE`): while it does, the
  bulk render is the share and is never paused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass

__all__ = ["Preemption", "PreemptionPolicy"]


class Preemption:
    """One job's pauses. `request` and `resume` are called on the event loop; `requested` is read on the render
    thread (a plain attribute: no lock needed)."""

    def __init__(self) -> None:
        self.requested = False
        self.count = 0
        self._resumed = asyncio.Event()

    def request(self) -> None:
        """Ask the render to pause at its next step (counted once per pause)."""
        if not self.requested:
            self.requested = True
            self.count += 1
            self._resumed.clear()

    def resume(self) -> None:
        """The paused job has a render slot again: it may take the model and resume."""
        self.requested = False
        self._resumed.set()

    async def wait_resumed(self, interrupted: Awaitable[None]) -> bool:
        """Until the job may resume (True) or `interrupted` completes first (False: a cancel or a hand-back)."""
        resuming = asyncio.ensure_future(self._resumed.wait())
        stopping = asyncio.ensure_future(interrupted)
        try:
            await asyncio.wait((resuming, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            resuming.cancel()
            stopping.cancel()
        return self._resumed.is_set() and not stopping.done()


@dataclass(frozen=True)
class PreemptionPolicy:
    """When the scheduler pauses the bulk render holding the model for a waiting interactive request."""

    enabled: bool = False
    max_preemptions: int = 0

    def allows(self, *, preemptions: int, steps_left: int, bulk_owed: bool) -> bool:
        return self.enabled and preemptions < self.max_preemptions and steps_left > 1 and not bulk_owed
