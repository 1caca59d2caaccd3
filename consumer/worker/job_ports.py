"""What the job runner needs of its collaborators, as protocols: where answers go (`Outbox`), who hears of progress
(`ProgressListener`) and the crash guard's durable count of starts (`StartLog`). The wiring passes in the real ones;
unit tests pass fakes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consumer.core.job import Headers, Record
from schemas.events import VideoRequest, VideoResult

__all__ = ["Outbox", "ProgressListener", "StartLog", "StepFn"]

StepFn = Callable[[int, int], None]
"""Called with (step, total) after each denoising step."""


class Outbox(Protocol):
    """Where a job's answers go, each acknowledged before the call returns
    (`consumer.kafka.worker_publisher.WorkerPublisher` sends them to Kafka). A copy the destination refuses for good
    raises `PublishRefused`."""

    async def result(self, result: VideoResult) -> None: ...
    async def dead_letter(self, record: Record, *, code: str, message: str) -> None: ...
    async def retry_later(self, record: Record, *, headers: Headers) -> None: ...


class ProgressListener(Protocol):
    """Told when an attempt at a request starts; answers with what to call after each denoising step
    (`consumer.kafka.progress.ProgressReporter` is one)."""

    def started(self, request: VideoRequest, *, attempt: int) -> StepFn: ...


class StartLog(Protocol):
    """The crash guard's durable count of the workers that started a record without answering it
    (`consumer.crash_guard.ledger.CrashGuardLedger`). Each write is acknowledged before the call returns."""

    def previous(self, record: Record) -> int: ...
    async def started(self, record: Record) -> None: ...
    async def answered(self, record: Record) -> None: ...
    async def abandoned(self, record: Record) -> None: ...
