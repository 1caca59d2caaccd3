"""One fetched request on its way through the worker, and what the core reads of the Kafka record it came in. Pure:
the record is described by a protocol that aiokafka's `ConsumerRecord` satisfies, so nothing here imports a client."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from consumer.core.retries import Delivery
from schemas.events import VideoRequest

__all__ = ["Headers", "Job", "Record", "RenderEnded"]

Headers = list[tuple[str, bytes]]


class Record(Protocol):
    """A consumed Kafka record (aiokafka's `ConsumerRecord[bytes, bytes]`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # milliseconds since the epoch
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass(frozen=True)
class Job:
    """A parsed request, from its fetch until it is answered. `tp` is its record's topic partition (a key of the
    consume loop's bookkeeping); `delivery` is the retry state its headers carried, read once at intake."""

    tp: Hashable
    record: Record
    request: VideoRequest
    received_at: datetime
    delivery: Delivery = field(default_factory=Delivery)

    @property
    def first_asked_at(self) -> datetime:
        """What `VIDGEN_TENANT_MAX_WAIT_S` is measured from: when the request first waited for its tenant's quota
        (a deferral brought it back), or this delivery."""
        since = self.delivery.waiting_since_ms
        if since is None:
            return self.received_at
        return min(datetime.fromtimestamp(since / 1000, UTC), self.received_at)


@dataclass(frozen=True)
class RenderEnded:
    """A job no longer needs the model: its render ended, or a cache hit made it unnecessary. The job runner posts
    it; the scheduler reacts by handing the job's render slot to the next job."""

    job: Job
