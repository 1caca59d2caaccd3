"""The crash guard's writes: `starts + 1` (acknowledged) before a record's work begins, a tombstone once it is
answered, `starts - 1` when it is given up gracefully. What is left counts the workers that died holding it. The
counts are read back by `consumer.kafka.state_topics.StateTopicsFollower` into `StartCounts`."""

from __future__ import annotations

from consumer.core.clock import WallClock, utc_now
from consumer.core.job import Record
from consumer.crash_guard.counts import StartCounts, starts_key, starts_value
from consumer.kafka.worker_publisher import WorkerPublisher
from consumer.settings import Settings

__all__ = ["CrashGuardLedger"]


class CrashGuardLedger:
    """The crash guard's counts for this worker's records, written to the attempts topic and kept in the follower's
    `StartCounts`, keyed by the record's position in its consumer group (see `consumer.crash_guard.counts`)."""

    def __init__(
        self, publisher: WorkerPublisher, counts: StartCounts, settings: Settings, *, clock: WallClock = utc_now
    ) -> None:
        self._publisher = publisher
        self._counts = counts
        self._group = settings.consumer_group
        self._worker_id = settings.worker_id
        self._clock = clock

    def previous(self, record: Record) -> int:
        """Workers that started `record` and died (or still hold it) as far as the attempts topic tells."""
        return self._counts.starts(self._key(record))

    async def started(self, record: Record) -> None:
        await self._write(record, self.previous(record) + 1)

    async def answered(self, record: Record) -> None:
        await self._write(record, 0)

    async def abandoned(self, record: Record) -> None:
        await self._write(record, self.previous(record) - 1)

    async def _write(self, record: Record, starts: int) -> None:
        key = self._key(record)
        starts = max(0, starts)
        await self._publisher.crash_guard_count(key, starts_value(starts, worker_id=self._worker_id, at=self._clock()))
        self._counts.set(key, starts)

    def _key(self, record: Record) -> bytes:
        return starts_key(self._group, record.topic, record.partition, record.offset)
