"""The scheduler's view of preemption: which job holds the model (known from its last denoising step), which bulk jobs
are paused, and which render to pause when an interactive job waits. Pure; the scheduler owns one.

An interactive job waits for the model when it is admitted and has not rendered yet (started: start image and memory
admission; rendering: waiting for the model), or when it is queued while no render slot is free. Only the holder of
the model is ever paused, only when it is bulk, not running alone (a record a worker died on), not already stopping,
and as `PreemptionPolicy` allows.
"""

from __future__ import annotations

from collections.abc import Iterator

from consumer.core.job import Job
from consumer.core.job_events import RenderProgress
from consumer.core.lifecycle import Phase
from consumer.core.pending import PendingJobs
from consumer.core.preemption import PreemptionPolicy
from consumer.core.slots import HeldSlots

__all__ = ["PausedJobs"]

_WAITING_FOR_MODEL = frozenset({Phase.STARTED, Phase.RENDERING})


class PausedJobs:
    """Paused jobs in the order they paused, and the job rendering now, beside the scheduler's slots and queue."""

    def __init__(self, policy: PreemptionPolicy, *, held: HeldSlots[Job], pending: PendingJobs) -> None:
        self.policy = policy
        self._held = held
        self._pending = pending
        self._paused: list[Job] = []
        self._at_model: RenderProgress | None = None  # the holder's last step

    def __len__(self) -> int:
        return len(self._paused)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._paused))

    def stepped(self, event: RenderProgress, *, alone: Job | None) -> Job | None:
        """A step of a job's render ended: one that holds a render slot holds the model. Returns the render to pause."""
        if event.milestone is None and event.job in self._held:
            self._at_model = event
        return self.to_pause(alone=alone)

    def left_model(self, job: Job) -> None:
        """The job's render ended (or paused, or its task ended): it no longer holds the model."""
        if self._at_model is not None and self._at_model.job is job:
            self._at_model = None

    def paused(self, job: Job) -> None:
        self.left_model(job)
        self._paused.append(job)

    def resumable(self, *, owed_only: bool) -> Job | None:
        """The job that paused first, taken to resume now, if bulk may take a render slot (and, with `owed_only`, if
        the lane policy owes bulk its share)."""
        if not self._paused or not self._held.bulk_free() or (owed_only and not self._pending.bulk_owed()):
            return None
        return self._paused.pop(0)

    def ended(self, job: Job) -> None:
        """The job's task ended (answered or given up), paused or not."""
        self.left_model(job)
        if job in self._paused:
            self._paused.remove(job)

    def to_pause(self, *, alone: Job | None) -> Job | None:
        """The render to pause now, if any (`alone`: the job running alone, never paused)."""
        held = self._at_model
        if held is None:
            return None
        holder = held.job
        lane = self._pending.lane
        if holder is alone or lane(holder) != "bulk" or holder.preemption.requested:
            return None
        if holder.stop.requested or holder.stop.handing_back:
            return None
        waiting = any(
            job is not holder and lane(job) == "interactive" and job.lifecycle.phase in _WAITING_FOR_MODEL
            for job in self._held.jobs()
        )
        if not waiting and not (self._pending.waiting("interactive") and not self._held.free):
            return None
        steps_left = held.total - held.step
        owed = self._pending.bulk_owed()
        return (
            holder
            if self.policy.allows(preemptions=holder.preemption.count, steps_left=steps_left, bulk_owed=owed)
            else None
        )
