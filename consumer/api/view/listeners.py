"""Who listens to the view: the event streams, each waiting on one job (and, while that job is queued, on the queue
it waits in). The view's writers (the follower, the API's own submissions, cancels and deletes) `notify` them of
every batch they applied; nothing polls the store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from consumer.api.view.database import BatchOutcome

__all__ = ["Listeners"]


class Listeners:
    """Who waits for which job, and which queue (`queue_counts.QUEUES`) each queued job waits in. `notify` wakes the
    listeners of the jobs a batch changed and of the jobs in the queues it moved (a job joined or left one: the
    places behind may have moved); each listener re-reads the job itself. Only open streams are listed, so a batch
    wakes at most those, and only when it moved their queue."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._queues: dict[str, set[asyncio.Event]] = {}
        self._queue_of: dict[asyncio.Event, str] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        event = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            self.follow_queue(event, None)
            _discard(self._waiting, job_id, event)

    def follow_queue(self, event: asyncio.Event, queue: str | None) -> None:
        """Wake `event` (a `watch`) also when `queue` moves; None: its job waits in no queue (any more)."""
        current = self._queue_of.get(event)
        if current == queue:
            return
        if current is not None:
            del self._queue_of[event]
            _discard(self._queues, current, event)
        if queue is not None:
            self._queue_of[event] = queue
            self._queues.setdefault(queue, set()).add(event)

    def notify(self, outcome: BatchOutcome) -> None:
        for state in outcome.changed:
            for event in self._waiting.get(state.id, ()):
                event.set()
        for queue in outcome.queues:
            for event in self._queues.get(queue, ()):
                event.set()

    def __len__(self) -> int:
        return sum(len(watchers) for watchers in self._waiting.values())


def _discard(index: dict[str, set[asyncio.Event]], key: str, event: asyncio.Event) -> None:
    events = index.get(key)
    if events is not None:
        events.discard(event)
        if not events:
            del index[key]
