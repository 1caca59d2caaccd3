"""Priority lanes. Pure.

Kafka has no priorities, so the lanes are topics: interactive requests on `video.requests`, bulk ones (backfills,
catalog imports: `priority: bulk`) on `video.requests.bulk`. A bulk backlog then waits in its own topic instead of
in front of every interactive request. Each worker consumes both and decides, from what it has fetched:

- **Which lane the next job comes from** (`LanePolicy`): interactive first; bulk while no admissible interactive job
  waits. While both wait, at least one render in `period` is bulk (`VIDGEN_BULK_MIN_SHARE`), so a steady stream of
  interactive requests cannot starve the backlog.
- **How many render slots bulk may hold** (`bulk_render_slots`): all but one. An interactive request that arrives
  while bulk jobs render finds a slot free and starts at once; at the model it waits only for the bulk renders
  already started or prepared: the render in progress with the default two slots (`VIDGEN_MAX_INFLIGHT_JOBS`).
- **How much bulk to fetch ahead** (`bulk_prefetch`): a few records, so the next bulk job is at hand when a slot
  frees; the bulk topic's partitions are paused beyond that. Fetched bulk records never fill the pending queue an
  interactive record needs room in, and the backlog stays in Kafka, where any worker with room can take it.

A job is bulk when its request says so, wherever it was found (a bulk request on `video.requests` is served, as
bulk), or when it came from the bulk topic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeVar

from consumer.core.quotas import FairQueue, QuotaDecision, TenantQuotas
from schemas.events import Priority

__all__ = [
    "LANES",
    "Lane",
    "LanePolicy",
    "LaneQueue",
    "bulk_prefetch",
    "bulk_render_slots",
    "lane_for",
    "lane_of",
    "topic_for",
]

Item = TypeVar("Item")

Lane = Literal["interactive", "bulk"]
LANES: tuple[Lane, ...] = ("interactive", "bulk")


def topic_for(priority: Priority | None, *, requests_topic: str, bulk_topic: str) -> str:
    """Where a producer publishes a request of this priority."""
    return bulk_topic if lane_for(priority) == "bulk" else requests_topic


def lane_for(priority: Priority | None) -> Lane:
    """The lane a request asks for: bulk when it says so, else interactive."""
    return "bulk" if priority == "bulk" else "interactive"


def lane_of(priority: Priority | None, *, topic: str, bulk_topic: str) -> Lane:
    """The lane of a fetched request: bulk when it says so or when it came from the bulk topic."""
    return "bulk" if topic == bulk_topic else lane_for(priority)


def bulk_render_slots(render_slots: int) -> int:
    """Render slots bulk jobs may hold at once: all but one, so one is always free for an interactive request (with a
    single render slot, that one: an interactive request then waits for the bulk render in progress)."""
    return max(1, render_slots - 1)


def bulk_prefetch(render_slots: int) -> int:
    """Bulk jobs a worker keeps fetched and waiting: one per render slot, enough that a freed slot never waits for a
    fetch (with `VIDGEN_MAX_PENDING_JOBS` at least this, room always remains for interactive records)."""
    return render_slots


class LanePolicy:
    """The starvation bound. `period` is the longest run of renders without a bulk one while bulk jobs wait:
    `floor(1 / share)` (0.1: one in ten, 0.3: one in three), None for a share of 0 (strict priority)."""

    def __init__(self, bulk_min_share: float) -> None:
        if not 0 <= bulk_min_share <= 1:
            raise ValueError(f"bulk_min_share must be within [0, 1], got {bulk_min_share}")
        self.period = math.floor(1 / bulk_min_share + 1e-9) if bulk_min_share > 0 else None
        self.interactive_run = 0  # interactive starts in a row while bulk jobs waited

    def order(self, *, bulk_startable: bool) -> tuple[Lane, ...]:
        """The lanes to take the next job from, in order: bulk first only when it is owed its share and can start."""
        if not bulk_startable:
            return ("interactive",)
        if self.period is not None and self.interactive_run >= self.period - 1:
            return ("bulk", "interactive")
        return ("interactive", "bulk")

    def started(self, lane: Lane, *, bulk_waiting: bool) -> None:
        """A job of `lane` started; `bulk_waiting`: bulk jobs waited when it was chosen."""
        self.interactive_run = self.interactive_run + 1 if lane == "interactive" and bulk_waiting else 0


class LaneQueue(Generic[Item]):
    """The pending queue as two fair queues, one per lane, over the same tenant quotas: `take` asks the lane policy
    which lane goes first. Otherwise it is a `FairQueue` (same methods), so its owner need not know about lanes."""

    def __init__(self, quotas: TenantQuotas, *, lane: Callable[[Item], Lane], policy: LanePolicy) -> None:
        self._lane = lane
        self.policy = policy
        self._queues: dict[Lane, FairQueue[Item]] = {name: FairQueue(quotas) for name in LANES}
        self.wake_in_s: float | None = None  # after a `take` that found nothing: earliest known retry

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __iter__(self) -> Iterator[Item]:
        return (item for queue in self._queues.values() for item in queue)

    def waiting(self, lane: Lane) -> int:
        return len(self._queues[lane])

    def push(self, tenant: str, item: Item, *, since: float | None = None) -> None:
        self._queues[self._lane(item)].push(tenant, item, since=since)

    def take(self, *, bulk_allowed: bool = True) -> tuple[str, Item, QuotaDecision] | None:
        """`FairQueue.take` over the lanes in the policy's order; bulk only when `bulk_allowed` (a render slot it may
        hold is free). An admitted job counts as started in its lane."""
        bulk_waiting = bool(self._queues["bulk"])
        waits = []
        for lane in self.policy.order(bulk_startable=bulk_waiting and bulk_allowed):
            queue = self._queues[lane]
            taken = queue.take()
            if taken is not None:
                if taken[2].admitted:
                    self.policy.started(lane, bulk_waiting=bulk_waiting)
                self.wake_in_s = None
                return taken
            if queue.wake_in_s is not None:
                waits.append(queue.wake_in_s)
        self.wake_in_s = min(waits, default=None)
        return None

    def overflow(self, limit: int) -> list[tuple[str, Item, QuotaDecision]]:
        """`FairQueue.overflow` for the whole queue: none while it holds fewer than `limit`, else each lane gives up
        deferred jobs until half of its own share is free."""
        if len(self) < limit:
            return []
        return [given for queue in self._queues.values() for given in queue.overflow(len(queue))]

    def remove(self, predicate: Callable[[Item], bool]) -> list[Item]:
        return [item for queue in self._queues.values() for item in queue.remove(predicate)]
