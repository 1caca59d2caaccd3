"""Job slots by stage. A job holds a render slot from its start until its render ends (start image, admission,
waiting for the model, rendering), then a finishing slot while it encodes, uploads and publishes. So the next
request is prepared while one renders and earlier results upload meanwhile, each stage bounded on its own. Pure:
whoever frees a slot (the job scheduler, `consumer/worker/scheduler.py`) starts the next job itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Literal, TypeVar

__all__ = ["HeldSlots", "Slot", "StageSlots"]

J = TypeVar("J")

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


class HeldSlots(Generic[J]):
    """Which running job holds which slot (by identity), and whether bulk jobs may take one more render slot: they
    hold at most `bulk_limit` at once (`consumer.core.priority_lanes.bulk_render_slots`)."""

    def __init__(self, slots: StageSlots, *, bulk_limit: int, is_bulk: Callable[[J], bool]) -> None:
        self._slots = slots
        self._bulk_limit = bulk_limit
        self._is_bulk = is_bulk
        self._held: dict[int, tuple[J, Slot]] = {}

    def __bool__(self) -> bool:
        return bool(self._held)

    def __contains__(self, job: J) -> bool:
        return id(job) in self._held

    @property
    def free(self) -> bool:
        return self._slots.free

    def jobs(self) -> list[J]:
        return [job for job, _ in self._held.values()]

    def take(self, job: J) -> None:
        self._held[id(job)] = (job, self._slots.take())

    def advance(self, job: J) -> bool:
        """`StageSlots.advance` of the job's slot (False when it holds none)."""
        held = self._held.get(id(job))
        return held is not None and self._slots.advance(held[1])

    def release(self, job: J) -> bool:
        """The job gives its slot back (idempotent). True when that freed one."""
        held = self._held.pop(id(job), None)
        return held is not None and self._slots.release(held[1])

    def bulk_free(self) -> bool:
        rendering = sum(slot.stage == "rendering" for job, slot in self._held.values() if self._is_bulk(job))
        return rendering < self._bulk_limit
