"""A flooding tenant never holds back the others (hardening finding 9), against the real broker and a real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumer.kafka.clients import client_options
from consumer.render.renderer import Renderer
from consumer.render.standin import StandInPipeline
from consumer.settings import Settings
from schemas.events import VideoResult
from tests.support import KafkaClient, ready, request_body, until

FLOOD = 40
TRACEPARENT = b"00-" + b"7" * 32 + b"-" + b"8" * 16 + b"-01"
StartWorker = Callable[..., Any]  # the conftest fixtures
MakeRenderer = Callable[[object], Renderer]


# --- Against the real broker --------------------------------------------------------------------------------


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


async def _committed_to_the_end(kafka: KafkaClient, topic: str, *, timeout_s: float = 30) -> dict[int, int]:
    """The group's committed offsets of `topic` once they reach its end (every record of it was answered)."""
    settings = kafka.settings
    _, ends = await kafka.read_to_end(topic)
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
    copies = sum((await _committed_to_the_end(kafka, settings.retry_topic)).values())
    for copy in await kafka.read(settings.retry_topic, copies):
        headers = dict(copy.headers)
        assert headers["traceparent"] == TRACEPARENT
        assert (headers["vidgen-attempt"], headers["vidgen-retry-round"]) == (b"1", b"0")
        assert int(headers["vidgen-waiting-since-ms"]) < int(headers["vidgen-not-before-ms"])
    return copies


@pytest.mark.timeout(180)
async def test_a_flooding_tenant_does_not_hold_back_another(
    settings: Settings, kafka: KafkaClient, start_worker: StartWorker, make_renderer: MakeRenderer
) -> None:
    quota = settings.model_copy(
        update={"model": "standin", "tenant_requests_per_minute": 12, "tenant_max_wait_s": 30.0}
    )
    worker = await start_worker(quota, renderer=make_renderer(StandInPipeline(0.1)))
    await until(lambda: ready(worker.http_port))
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


@pytest.mark.timeout(180)
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
