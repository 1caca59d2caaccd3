"""Job slots by stage. A job holds a render slot from its start until its render ends (start image, admission,
waiting for the model, rendering), then a finishing slot while it encodes, uploads and publishes. So the next
request is prepared while one renders and earlier results upload meanwhile, each stage bounded on its own."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Slot", "StageSlots"]


class StageSlots:
    """`rendering` bounds jobs before their render ends; new jobs start only while fewer than `finishing` are past
    it (slow uploads hold frames in memory, so they hold back new renders too). `finishing=0` keeps a job in its
    render slot until it is done: the sequential design. `on_change` runs whenever a slot frees up."""

    def __init__(self, *, rendering: int, finishing: int, on_change: Callable[[], None]) -> None:
        if rendering < 1 or finishing < 0:
            raise ValueError(f"need rendering >= 1 and finishing >= 0, got {rendering} and {finishing}")
        self.rendering_limit = rendering
        self.finishing_limit = finishing
        self._on_change = on_change
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
        return Slot(self)

    def advance(self, slot: Slot) -> None:
        """Move a rendering slot to finishing (a no-op without a finishing stage)."""
        if slot.stage != "rendering" or self.finishing_limit == 0:
            return
        self.rendering -= 1
        self.finishing += 1
        slot.stage = "finishing"
        self._on_change()

    def release(self, slot: Slot) -> None:
        if slot.stage == "rendering":
            self.rendering -= 1
        elif slot.stage == "finishing":
            self.finishing -= 1
        else:
            return
        slot.stage = "done"
        self._on_change()


class Slot:
    """One job's hold on its stage. Both moves are idempotent: a retried job may report its render twice."""

    def __init__(self, slots: StageSlots) -> None:
        self._slots = slots
        self.stage = "rendering"

    def rendered(self) -> None:
        """The render ended (or a cache hit made it unnecessary): hand the render slot to the next job."""
        self._slots.advance(self)

    def done(self) -> None:
        self._slots.release(self)
