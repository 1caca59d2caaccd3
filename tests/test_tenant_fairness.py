"""A flooding tenant never holds back the others (hardening finding 9), against the real broker and a real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from consumer.core.job import Job
from consumer.core.pending import PendingJobs
from consumer.core.quotas import QuotaDecision
from consumer.core.results import Identity
from consumer.core.retries import Delivery, RetryPolicy
from consumer.errors import VidgenError
from consumer.job.runner import JobRunner
from consumer.kafka.clients import client_options
from consumer.render.renderer import Renderer
from consumer.render.standin import StandInPipeline
from consumer.settings import Settings
from consumer.telemetry.metrics import Metrics
from schemas.events import VideoRequest, VideoResult
from tests.conftest import KafkaClient, request_body

FLOOD = 40
TRACEPARENT = b"00-" + b"7" * 32 + b"-" + b"8" * 16 + b"-01"
TP = TopicPartition("video.requests", 0)
StartWorker = Callable[..., Any]  # the conftest fixtures
MakeRenderer = Callable[[object], Renderer]


# --- Pure decisions ---------------------------------------------------------------------------------------


def _job(offset: int, tenant: str, *, waiting_since: datetime | None = None) -> Job:
    request = VideoRequest.model_validate(request_body(f"r{offset}", tenant_id=tenant))
    since = None if waiting_since is None else int(waiting_since.timestamp() * 1000)
    # The record itself plays no part here: the offset stands in for it.
    return Job(TP, offset, request, datetime.now(UTC), Delivery(waiting_since_ms=since))


def test_max_wait_counts_from_the_first_time_a_request_waited() -> None:
    pending = PendingJobs(
        Settings(tenant_max_inflight=1, tenant_max_wait_s=30.0, max_pending_jobs=8), clock=time.monotonic
    )
    assert pending.quotas.try_acquire("a").admitted  # "a" is at its in-flight limit from now on
    pending.push(_job(1, "a", waiting_since=datetime.now(UTC) - timedelta(seconds=31)))  # back from a deferral
    pending.push(_job(2, "a"))
    taken = pending.take()
    assert taken is not None
    job, decision = taken
    assert (job.record, decision.action) == (1, "reject")
    assert decision.error("a").code == "rate_limited"
    assert pending.take() is None  # the fresh one waits on
    assert len(pending) == 1


def test_pending_jobs_give_up_deferred_jobs_soonest_due_first_and_make_room() -> None:
    pending = PendingJobs(Settings(tenant_requests_per_minute=12, max_pending_jobs=4), clock=time.monotonic)
    for _ in range(12):
        assert pending.quotas.try_acquire("flood").admitted
        pending.quotas.release("flood")
    for offset in range(4):
        pending.push(_job(offset, "flood"))
    given_up = pending.overflow()
    assert [(job.record, decision.action) for job, decision in given_up] == [(2, "defer"), (3, "defer")]
    waits = [decision.retry_after_s for _, decision in given_up]
    assert waits == pytest.approx([15.0, 20.0], abs=0.1)  # the 3rd and 4th token after the two kept
    assert pending.room == 2


def test_a_deferral_waits_its_turn_but_never_longer_than_a_retry() -> None:
    policy = RetryPolicy.from_settings(Settings(retry_topic_delay_s=30.0))
    assert policy.deferral_delay(12.5) == 12.5
    assert policy.deferral_delay(300.0) == 30.0  # served in several trips: never holds back a later retry
    assert policy.deferral_delay(None) == 30.0  # waits on a release: no known turn
    assert policy.deferral_delay(0.01) == 1.0  # never a busy loop between a full worker and the topic
    assert RetryPolicy.from_settings(Settings(retry_topic_delay_s=0.0)).deferral_delay(None) == 1.0


def test_a_deferral_keeps_trace_attempt_and_round_and_records_when_it_first_waited() -> None:
    original = [("traceparent", TRACEPARENT), ("vidgen-attempt", b"4"), ("vidgen-retry-round", b"1")]
    delivery = Delivery.from_headers(original)
    headers = delivery.deferred(original, waiting_since_ms=1_000, now_ms=50_000, delay_s=2.5)
    assert headers == [
        ("traceparent", TRACEPARENT),
        ("vidgen-attempt", b"4"),
        ("vidgen-retry-round", b"1"),
        ("vidgen-not-before-ms", b"52500"),
        ("vidgen-waiting-since-ms", b"1000"),
    ]
    back = Delivery.from_headers(headers)
    assert (back.attempt, back.round, back.not_before_ms, back.waiting_since_ms) == (4, 1, 52_500, 1_000)
    again = back.deferred(headers, waiting_since_ms=1_000, now_ms=60_000, delay_s=1.0)
    assert [name for name, _ in again].count("vidgen-waiting-since-ms") == 1
    # A new retry round (after a transient failure) is a new request for the quota: its wait starts afresh.
    retried = back.next_round(headers, next_attempt=5, now_ms=60_000, delay_s=30.0)
    assert Delivery.from_headers(retried).waiting_since_ms is None
    assert Delivery.from_headers(retried).round == 2


class _RefusingRetryTopic:
    """A publisher whose retry topic refuses every copy for good (as a record too large for it would be)."""

    def __init__(self) -> None:
        self.results: list[VideoResult] = []

    async def retry_later(self, record: object, *, headers: object) -> None:
        raise VidgenError("video.requests.retry refused the record", code="publish_refused")

    async def result(self, result: VideoResult) -> None:
        self.results.append(result)


async def test_a_deferral_the_retry_topic_refuses_is_answered_rate_limited() -> None:
    publisher = _RefusingRetryTopic()
    runner = JobRunner(
        settings=Settings(),
        publisher=publisher,  # type: ignore[arg-type]
        pipeline=None,  # type: ignore[arg-type]  # nothing renders
        identity=Identity(worker_id="w", model="standin"),
        metrics=Metrics(),
    )
    request = VideoRequest.model_validate(request_body("r1", tenant_id="flooder"))
    record = ConsumerRecord(TP.topic, TP.partition, 7, 0, 0, b"r1", b"{}", None, 2, 2, [])
    decision = QuotaDecision("defer", 5.0, "over 12 requests per minute")
    assert await runner.defer(Job(TP, record, request, datetime.now(UTC)), decision)  # answered: committable
    [result] = publisher.results
    assert result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("rate_limited", True)
    assert result.error.message == "tenant flooder: over 12 requests per minute; cannot be deferred"


# --- Against the real broker --------------------------------------------------------------------------------


async def _ready(port: int, *, timeout_s: float = 30) -> None:
    """Until /readyz answers 200: the model is warm and the worker is a member of the group."""
    async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.1)  # watching another component's state


async def _results(settings: Settings, ids: set[str], *, timeout_s: float) -> dict[str, list[Any]]:
    """Every result record of the topic, by request id, once each id in `ids` has at least one."""
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(settings.results_topic) or set()
        consumer.assign([TopicPartition(settings.results_topic, p) for p in partitions])
        seen: dict[str, list[Any]] = {}
        async with asyncio.timeout(timeout_s):
            while not ids <= seen.keys():
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for record in records:
                        seen.setdefault(record.key.decode(), []).append(record)
        return seen
    finally:
        await consumer.stop()


async def _end_offsets(settings: Settings, topic: str, *, timeout_s: float = 30) -> dict[int, int]:
    """The next offset of each partition of `topic`, from the high watermark of a read to the end: tansu answers
    ListOffsets (`end_offsets`) with a wrong offset once records were produced in batches."""
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(partitions)
        ends: dict[int, int] = {}
        async with asyncio.timeout(timeout_s):
            while len(ends) < len(partitions):
                await consumer.getmany(timeout_ms=200)
                for tp in partitions:
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) >= highwater:
                        ends[tp.partition] = highwater
        return ends
    finally:
        await consumer.stop()


async def _committed_to_the_end(settings: Settings, topic: str, *, timeout_s: float = 30) -> dict[int, int]:
    """The group's committed offsets of `topic` once they reach its end (every record of it was answered)."""
    ends = await _end_offsets(settings, topic)
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=settings.consumer_group)
    await consumer.start()
    committed: dict[int, int] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while committed != ends:
                await asyncio.sleep(0.2)  # commits of another component
                committed = {p: await consumer.committed(TopicPartition(topic, p)) or 0 for p in ends}
    except TimeoutError:
        raise AssertionError(f"{topic}: committed {committed}, end offsets {ends}") from None
    finally:
        await consumer.stop()
    return committed


async def _flood(kafka: KafkaClient, count: int, *, key: str) -> set[str]:
    """`count` requests of tenant "flooder", all in one partition, each with a trace header to keep."""
    flood = {f"flood-{index:02d}" for index in range(count)}
    for request_id in sorted(flood):
        body = request_body(request_id, tenant_id="flooder", prompt=f"shoe {request_id}")  # distinct: no cache hits
        await kafka.send(body, key=key, headers=[("traceparent", TRACEPARENT)])
    return flood


def _answers(results: dict[str, list[Any]], ids: set[str]) -> dict[str, str]:
    """Status or error code per request, checking each got exactly one answer, in its first attempt."""
    answers = {}
    for request_id in ids:
        [record] = results[request_id]  # nothing lost, nothing doubled
        result = VideoResult.model_validate_json(record.value)
        assert result.attempt == 1  # a deferral is not an attempt
        answers[request_id] = result.error.code if result.error is not None else result.status
    return answers


async def _deferral_copies(kafka: KafkaClient, settings: Settings) -> int:
    """How many copies deferrals wrote to the retry topic, once every one was consumed and committed; each kept
    the request's trace header and is neither an attempt nor a retry round."""
    copies = sum((await _committed_to_the_end(settings, settings.retry_topic)).values())
    for copy in await kafka.read(settings.retry_topic, copies):
        headers = dict(copy.headers)
        assert headers["traceparent"] == TRACEPARENT
        assert (headers["vidgen-attempt"], headers["vidgen-retry-round"]) == (b"1", b"0")
        assert int(headers["vidgen-waiting-since-ms"]) < int(headers["vidgen-not-before-ms"])
    return copies


@pytest.mark.integration
async def test_a_flooding_tenant_does_not_hold_back_another(
    settings: Settings, kafka: KafkaClient, start_worker: StartWorker, make_renderer: MakeRenderer
) -> None:
    quota = settings.model_copy(
        update={"model": "standin", "tenant_requests_per_minute": 12, "tenant_max_wait_s": 30.0}
    )
    worker = await start_worker(quota, renderer=make_renderer(StandInPipeline(0.1)))
    await _ready(worker.http_port)
    key = "one-partition"  # the quiet request comes after the whole flood in the same partition
    flood = await _flood(kafka, FLOOD, key=key)
    await kafka.send(request_body("quiet-0", tenant_id="quiet"), key=key)
    quiet_sent = time.time()

    results = await _results(quota, {*flood, "quiet-0"}, timeout_s=120)

    assert _answers(results, {"quiet-0"}) == {"quiet-0": "completed"}
    waited = results["quiet-0"][0].timestamp / 1000 - quiet_sent
    print(f"quiet tenant's result {waited:.2f} s after its request")  # noqa: T201 - the figure for the report
    assert waited < 10, f"the quiet tenant waited {waited:.1f} s behind the flood"
    answers = _answers(results, flood)
    assert set(answers.values()) <= {"completed", "rate_limited"}
    completed = sum(answer == "completed" for answer in answers.values())
    assert completed >= 12  # at least the burst
    assert await kafka.wait_committed(FLOOD + 1) == FLOOD + 1
    copies = await _deferral_copies(kafka, quota)
    assert copies > 0
    print(f"flood: {completed} completed, {FLOOD - completed} rate_limited, {copies} deferrals")  # noqa: T201


@pytest.mark.integration
async def test_without_a_max_wait_every_deferred_request_completes(
    settings: Settings, kafka: KafkaClient, start_worker: StartWorker, make_renderer: MakeRenderer
) -> None:
    quota = settings.model_copy(
        update={
            "model": "standin",
            "tenant_requests_per_minute": 30,  # a burst of 30, then one every 2 s
            "max_pending_jobs": 8,
            "retry_topic_delay_s": 3.0,  # waits longer than this take several trips through the retry topic
        }
    )
    await start_worker(quota, renderer=make_renderer(StandInPipeline(0.1)))
    flood = await _flood(kafka, FLOOD, key="one-partition")
    results = await _results(quota, flood, timeout_s=120)
    assert set(_answers(results, flood).values()) == {"completed"}
    assert await kafka.wait_committed(FLOOD) == FLOOD
    copies = await _deferral_copies(kafka, quota)
    print(f"{FLOOD} completed after {copies} deferrals")  # noqa: T201 - the figure for the report
    assert copies > 0  # the queue filled with requests past the burst: some went through the retry topic


@pytest.mark.integration
async def test_a_forged_not_before_header_cannot_hold_a_requests_partition(
    settings: Settings, kafka: KafkaClient, start_worker: StartWorker, make_renderer: MakeRenderer
) -> None:
    await start_worker(settings.model_copy(update={"model": "standin"}), renderer=make_renderer(StandInPipeline(0.1)))
    key = "one-partition"
    in_an_hour = str(int(time.time() * 1000) + 3_600_000).encode()
    # Retry state is the workers' own, on their retry topic; on video.requests it is just a client's header.
    await kafka.send(
        request_body("forged-0", tenant_id="mallory"), key=key, headers=[("vidgen-not-before-ms", in_an_hour)]
    )
    await kafka.send(request_body("honest-0", tenant_id="honest"), key=key)
    results = await kafka.results(2, timeout_s=30)
    assert {request_id: result.status for request_id, result in results.items()} == {
        "forged-0": "completed",
        "honest-0": "completed",
    }
    assert await kafka.wait_committed(2) == 2
