"""Job slots by stage. A job holds a render slot from its start until its render ends (start image, admission,
waiting for the model, rendering), then a finishing slot while it encodes, uploads and publishes. So the next
request is prepared while one renders and earlier results upload meanwhile, each stage bounded on its own. Pure:
whoever frees a slot (the job scheduler, `consumer/worker/scheduler.py`) starts the next job itself."""

from __future__ import annotations

from typing import Literal

__all__ = ["Slot", "StageSlots"]

Stage = Literal["rendering", "finishing", "done"]


class StageSlots:
    """`rendering` bounds jobs before their render ends; new jobs start only while fewer than `finishing` are past
    it (slow uploads hold frames in memory, so they hold back new renders too). `finishing=0` keeps a job in its
    render slot until it is done: the sequential design."""

    def __init__(self, *, rendering: int, finishing: int) -> None:
        if rendering < 1 or finishing < 0:
            raise ValueError(f"need rendering >= 1 and finishing >= 0, got {rendering} and {finishing}")
        self.rendering_limit = rendering
        self.finishing_limit = finishing
        self.rendering = 0
        self.finishing = 0

    @property
    def free(self) -> bool:
        return self.rendering < self.rendering_limit and (
            self.finishing_limit == 0 or self.finishing < self.finishing_limit
        )

    def take(self) -> Slot:
        if not self.free:
            raise RuntimeError("no free slot")
        self.rendering += 1
        return Slot()

    def advance(self, slot: Slot) -> bool:
        """Move a rendering slot to finishing (a no-op without a finishing stage, or once moved: a retried job may
        report its render twice). True when that freed a render slot."""
        if slot.stage != "rendering" or self.finishing_limit == 0:
            return False
        self.rendering -= 1
        self.finishing += 1
        slot.stage = "finishing"
        return True

    def release(self, slot: Slot) -> bool:
        """The job ended: give back whichever slot it holds (idempotent). True when that freed one."""
        if slot.stage == "rendering":
            self.rendering -= 1
        elif slot.stage == "finishing":
            self.finishing -= 1
        else:
            return False
        slot.stage = "done"
        return True


class Slot:
    """One job's hold on its stage."""

    def __init__(self) -> None:
        self.stage: Stage = "rendering"
