"""Which offsets may be committed: only the contiguous run of finished records per partition. Pure."""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Records are started in offset order per partition and may finish in any order.

    The committable offset of a partition is one past the last record of the longest finished prefix, so a
    commit never skips a record whose result has not been published.
    """

    def __init__(self) -> None:
        self._pending: dict[Hashable, dict[int, bool]] = {}
        self._committable: dict[Hashable, int] = {}

    def start(self, partition: Hashable, offset: int) -> None:
        self._pending.setdefault(partition, {})[offset] = False

    def finish(self, partition: Hashable, offset: int) -> None:
        pending = self._pending.get(partition)
        if pending is None or offset not in pending:
            return  # the partition was revoked meanwhile: nothing of it may be committed by us
        pending[offset] = True
        for first in sorted(pending):
            if not pending[first]:
                break
            del pending[first]
            self._committable[partition] = first + 1

    def take_committable(self) -> dict[Hashable, int]:
        """Offsets to commit now (next offset to read, Kafka style); each is handed out once."""
        ready, self._committable = self._committable, {}
        return ready

    def in_flight(self, partition: Hashable | None = None) -> int:
        if partition is not None:
            return sum(not done for done in self._pending.get(partition, {}).values())
        return sum(not done for pending in self._pending.values() for done in pending.values())

    def forget(self, partition: Hashable) -> None:
        """Drop a revoked partition: its unfinished records will be re-read by the next owner."""
        self._pending.pop(partition, None)
        self._committable.pop(partition, None)
