"""The crash guard's bookkeeping: how many workers started a record and died before answering it. Pure: the records
of the attempts topic come in as bytes (`consumer/kafka/state_topics.py` follows the topic and writes to it).

Each started record has one entry, keyed by its position, `<group>/<topic>/<partition>/<offset>`: nobody but the
record's own place in the log names it (a request id could be reused by another tenant), and a retry-topic copy is
a record of its own. The value counts starts: a worker writes `starts + 1` (acknowledged) before the record's work
begins, a tombstone once the record is answered, and `starts - 1` when it gives the record up gracefully (shutdown or
revocation past their grace). So what is left counts the workers that died while holding the record.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from consumer.errors import WorkerCrashed

__all__ = ["StartCounts", "StartsValue", "crash_verdict", "starts_key", "starts_value"]


class StartsValue(BaseModel):
    """The value of an attempts record."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    starts: int = Field(ge=1, description="Workers that started the record and have not answered or given it up.")
    worker_id: str = Field(description="The worker that wrote this count.")
    at: AwareDatetime = Field(description="When it was written.")

    def encode(self) -> bytes:
        return self.model_dump_json().encode("utf-8")


def starts_key(group: str, topic: str, partition: int, offset: int) -> bytes:
    return f"{group}/{topic}/{partition}/{offset}".encode()


class StartCounts:
    """The latest count per key, as read from the attempts topic or written to it by this worker."""

    def __init__(self) -> None:
        self._starts: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the attempts topic, in order. Unreadable records change nothing."""
        if key is None:
            return
        if value is None:
            self._starts.pop(key, None)
            return
        try:
            self.set(key, StartsValue.model_validate_json(value).starts)
        except ValidationError:
            return

    def starts(self, key: bytes) -> int:
        return self._starts.get(key, 0)

    def set(self, key: bytes, starts: int) -> None:
        if starts > 0:
            self._starts[key] = starts
        else:
            self._starts.pop(key, None)


def starts_value(starts: int, *, worker_id: str, at: datetime) -> bytes | None:
    """What to write for a new count: the value, or a tombstone (None) at zero."""
    return StartsValue(starts=starts, worker_id=worker_id, at=at).encode() if starts > 0 else None


def crash_verdict(previous: int, *, limit: int) -> WorkerCrashed | None:
    """The answer for a record that `previous` workers started and died on, once that reaches `limit`."""
    if previous < limit:
        return None
    return WorkerCrashed(
        f"{previous} workers died while processing this request (limit {limit}, VIDGEN_MAX_WORKER_CRASHES); "
        "it is not started again"
    )
