"""Everything the worker writes to Kafka: results, dead letters, retry-topic copies, crash-guard counts. Each send
waits for the broker's ack and rides out transient errors (broker outages) with backoff: until it returns, the
record's offset stays uncommitted. An error retrying cannot fix (a record too large, a topic not authorised) raises
`PublishRefused` instead, and each kind of record has a smaller fallback, so there is always an end:

- a refused result is replaced by a minimal `failed` result (`publish_refused`, no metadata, no video);
- a refused dead letter is sent again as a stub (`consumer.core.dlq.dead_letter_copy`);
- a refused retry-topic copy makes the request fail for good at once (`consumer/worker/job_runner.py`).

If a fallback is refused too, the topic takes nothing from this worker: `PublishRefused` propagates, the job
crashes and the worker stops rather than skip answers (a configuration error for an operator, not a data error).

Results and dead letters carry CloudEvents headers (`consumer.core.cloud_events`); the producer counts them against
`VIDGEN_MAX_EVENT_BYTES` like any other header, and a dead letter's copy is measured with them."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential, wait_random

from consumer.core.clock import WallClock, utc_now
from consumer.core.cloud_events import dead_letter_event, result_event
from consumer.core.dlq import Outgoing, dead_letter_copy, provenance_headers
from consumer.core.intake import usable_id
from consumer.core.job import Headers, Record
from consumer.core.results import undeliverable
from consumer.errors import PublishRefused
from consumer.kafka.clients import record_bytes
from consumer.settings import Settings
from consumer.telemetry.tracing import inject_headers, messaging_attributes
from schemas.events import VideoResult

__all__ = ["WorkerPublisher", "is_transient"]

log = logging.getLogger(__name__)


class WorkerPublisher:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        settings: Settings,
        *,
        tracer: Tracer | None = None,
        clock: WallClock = utc_now,
    ) -> None:
        self._producer = producer
        self._settings = settings
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock = clock

    async def result(self, result: VideoResult) -> None:
        topic = self._settings.results_topic
        with self._tracer.start_as_current_span(f"send {topic}", kind=SpanKind.PRODUCER) as span:
            span.set_attributes(messaging_attributes("send", topic, key=result.request_id))
            try:
                await self._send_result(topic, result)
            except PublishRefused as refused:
                log.exception("result of request %s refused; publishing a minimal failed result", result.request_id)
                result = undeliverable(result, refused)
                await self._send_result(topic, result)
        log.info("request %s %s", result.request_id, result.status)

    async def dead_letter(self, record: Record, *, code: str, message: str) -> None:
        """The original key, value and headers, plus what went wrong and where the record came from; a stub when
        that would exceed `VIDGEN_MAX_EVENT_BYTES` or the broker refuses it."""
        provenance = [
            *provenance_headers(record, code=code, message=message, worker_id=self._settings.worker_id),
            *dead_letter_event(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                code=code,
                value=record.value,
                # The contract keys requests by their id; a key that is not a well-formed id names no request.
                request_id=usable_id(record.key.decode("utf-8", "replace")) if record.key else None,
                source=self._settings.event_source,
                time=self._clock(),
            ),
        ]
        copy = dead_letter_copy(record, provenance, max_bytes=self._settings.max_event_bytes, measure=record_bytes)
        try:
            await self._send_copy(self._settings.dlq_topic, copy)
        except PublishRefused:
            if copy.omitted:
                raise
            log.exception(
                "dead letter of %s[%d]@%d refused; sending a stub", record.topic, record.partition, record.offset
            )
            copy = dead_letter_copy(
                record, provenance, max_bytes=self._settings.max_event_bytes, measure=record_bytes, stub=True
            )
            await self._send_copy(self._settings.dlq_topic, copy)
        stub = f" (a stub: {', '.join(copy.omitted)} left out)" if copy.omitted else ""
        log.warning("record %s[%d]@%d dead-lettered: %s%s", record.topic, record.partition, record.offset, code, stub)

    async def retry_later(self, record: Record, *, headers: Headers) -> None:
        """A copy for the retry topic. Raises `PublishRefused` when it cannot be written (e.g. too large)."""
        await self._send(self._settings.retry_topic, key=record.key, value=record.value, headers=headers)

    async def crash_guard_count(self, key: bytes, value: bytes | None) -> None:
        """A crash-guard count on the attempts topic (None: a tombstone), acknowledged."""
        await self._send(self._settings.attempts_topic, key=key, value=value, headers=[])

    async def _send_result(self, topic: str, result: VideoResult) -> None:
        envelope = result_event(
            status=result.status,
            tenant_id=result.tenant_id,
            request_id=result.request_id,
            source=self._settings.event_source,
            time=result.timings.completed_at or self._clock(),
        )
        await self._send(
            topic,
            key=result.request_id.encode("utf-8"),
            value=result.model_dump_json().encode("utf-8"),
            headers=[*inject_headers(), *envelope],  # this span's context: the result joins the request's trace
        )

    async def _send_copy(self, topic: str, copy: Outgoing) -> None:
        await self._send(topic, key=copy.key, value=copy.value, headers=copy.headers)

    async def _send(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Send and wait for the ack, retrying transient errors for as long as they last; raise `PublishRefused`
        on any other Kafka error (e.g. `MessageSizeTooLargeError`, from the producer's own check or the broker)."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(is_transient),
                wait=wait_exponential(multiplier=0.2, max=10) + wait_random(0, 0.5),
                before_sleep=_log_retry(topic),
            ):
                with attempt:
                    await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:
            raise PublishRefused(f"{topic} refused the record: {type(exc).__name__}: {exc}") from exc


def is_transient(error: BaseException) -> bool:
    """Whether a publish error may go away on its own: aiokafka's `retriable` errors (connection lost, leader
    moved, request timed out...) and `KafkaTimeoutError` (the producer could not hand the record to a broker in
    time, as in an outage), which aiokafka leaves unmarked. Anything else is refused for good."""
    return isinstance(error, KafkaError) and (error.retriable or isinstance(error, KafkaTimeoutError))


def _log_retry(topic: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("publish to %s failed (attempt %d), retrying: %r", topic, state.attempt_number, error)

    return before_sleep
