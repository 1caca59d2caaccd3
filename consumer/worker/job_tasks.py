"""The scheduler's tasks: one per record being answered, found by partition (a revocation waits for its own) or all
together (a drain), and the first that crashed outside the result path (`crash`: the worker stops rather than wedge,
since that record's offset can never be committed)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Coroutine, Hashable
from typing import Any

from consumer.telemetry.worker_metrics import Metrics

__all__ = ["JobTasks"]

log = logging.getLogger(__name__)


class JobTasks:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._by_partition: dict[Hashable, set[asyncio.Task[None]]] = {}
        self._running: set[asyncio.Task[None]] = set()
        self.crash: BaseException | None = None

    def __len__(self) -> int:
        return len(self._running)

    def spawn(self, tp: Hashable, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=name)
        tasks = self._by_partition.setdefault(tp, set())
        for bucket in (tasks, self._running):
            bucket.add(task)
            task.add_done_callback(bucket.discard)
        task.add_done_callback(self.note_crash)
        self.count()

    def count(self) -> None:
        """Report how many run (`vidgen_inflight_jobs`)."""
        self._metrics.inflight.set(len(self._running))

    def of(self, partitions: Collection[Hashable]) -> list[asyncio.Task[None]]:
        return [task for tp in partitions for task in self._by_partition.get(tp, ())]

    def running(self) -> list[asyncio.Task[None]]:
        return list(self._running)

    def forget(self, partitions: Collection[Hashable]) -> None:
        for tp in partitions:
            self._by_partition.pop(tp, None)
        self.count()

    def note_crash(self, task: asyncio.Task[None]) -> None:
        """A done callback for the scheduler's tasks (its jobs, its `react`): one that raised stops the worker."""
        if task.cancelled() or task.exception() is None:
            return
        self.crash = task.exception()
        log.critical("task %s crashed: %r; stopping the worker", task.get_name(), self.crash)
