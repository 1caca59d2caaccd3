"""Priority lanes. Pure: which topic a request goes to, which lane a fetched job is in, and the order jobs leave the
pending queue in: interactive first, bulk while nothing interactive is admissible, and the starvation bound (while
both wait, at least one start in floor(1 / share) is bulk). And the consume loop's part, through a fake consumer:
a bulk backlog is fetched only a few records ahead (its partitions paused beyond), and nothing of it is lost."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.core.job import Job
from consumer.core.pending import PendingJobs
from consumer.core.priority_lanes import Lane, LanePolicy, bulk_prefetch, bulk_render_slots, lane_of, topic_for
from consumer.errors import StorageError
from consumer.settings import Settings
from consumer.telemetry.worker_metrics import Metrics
from consumer.worker.consume_loop import ConsumeLoop
from consumer.worker.job_runner import JobRunner
from consumer.worker.policies import pending_jobs
from consumer.worker.scheduler import JobScheduler
from producer_examples.publish_request import build_request, submit_parser
from schemas.events import VideoRequest
from tests.support import IDENTITY, REPO, FakeConsumer, FakePipeline, FakePublisher, consumed, request_body

REQUESTS, BULK, RETRY = "video.requests", "video.requests.bulk", "video.requests.retry"
_offsets = itertools.count()


def _job(lane: Lane, *, tenant: str = "shop-1", topic: str | None = None) -> Job:
    offset = next(_offsets)
    body = request_body(f"{lane}-{offset}", tenant_id=tenant, **({"priority": "bulk"} if lane == "bulk" else {}))
    topic = topic or (BULK if lane == "bulk" else REQUESTS)
    record = consumed(topic, 0, offset, body)
    return Job((topic, 0), record, VideoRequest.model_validate(body), datetime.now(UTC))


def _pending(**overrides: object) -> PendingJobs:
    return pending_jobs(Settings(**{"max_pending_jobs": 64, **overrides}), clock=time.monotonic)  # type: ignore[arg-type]


def _lanes_taken(pending: PendingJobs, count: int) -> str:
    """The lanes of the next `count` jobs taken, as a string of I and B (each released at once)."""
    out = ""
    for _ in range(count):
        taken = pending.take()
        assert taken is not None
        job, decision = taken
        assert decision.admitted
        out += "B" if pending.lane(job) == "bulk" else "I"
        pending.release(job)
    return out


def test_producers_publish_bulk_requests_to_the_bulk_topic() -> None:
    topics = {"requests_topic": REQUESTS, "bulk_topic": BULK}
    assert topic_for("bulk", **topics) == BULK
    assert topic_for("interactive", **topics) == topic_for(None, **topics) == REQUESTS


def test_a_job_is_bulk_when_its_request_says_so_or_it_came_from_the_bulk_topic() -> None:
    assert lane_of("bulk", topic=REQUESTS, bulk_topic=BULK) == "bulk"  # found on the interactive topic: still bulk
    assert lane_of("bulk", topic=RETRY, bulk_topic=BULK) == "bulk"  # back from a retry round
    assert lane_of(None, topic=BULK, bulk_topic=BULK) == "bulk"
    assert lane_of(None, topic=REQUESTS, bulk_topic=BULK) == lane_of("interactive", topic=RETRY, bulk_topic=BULK)
    assert lane_of(None, topic=REQUESTS, bulk_topic=BULK) == "interactive"


def test_the_contract_describes_the_bulk_lane() -> None:
    doc = yaml.safe_load((REPO / "schemas" / "asyncapi.yaml").read_text(encoding="utf-8"))
    [(name, channel)] = [(name, c) for name, c in doc["channels"].items() if c["address"] == Settings().bulk_topic]
    assert [message["$ref"] for message in channel["messages"].values()] == ["#/components/messages/VideoRequest"]
    [receive] = [op for op in doc["operations"].values() if op["channel"]["$ref"] == f"#/channels/{name}"]
    assert receive["action"] == "receive" and receive["reply"]["channel"]["$ref"] == "#/channels/videoResults"
    schema = VideoRequest.model_json_schema()["properties"]["priority"]
    assert {"enum": ["interactive", "bulk"], "type": "string"} in schema["anyOf"]


def test_vidgen_submit_priority_bulk_marks_the_request_for_the_bulk_lane() -> None:
    bulk = submit_parser("vidgen submit").parse_args(["--prompt", "a canvas tote bag", "--priority", "bulk"])
    assert build_request(bulk, image_url=None).priority == "bulk"
    default = submit_parser("vidgen submit").parse_args(["--prompt", "a canvas tote bag"])
    assert build_request(default, image_url=None).priority is None  # absent: interactive, and not sent at all


def test_bulk_holds_all_render_slots_but_one_and_fetches_one_per_slot_ahead() -> None:
    assert [bulk_render_slots(slots) for slots in (1, 2, 4)] == [1, 1, 3]
    assert [bulk_prefetch(slots) for slots in (1, 2, 4)] == [1, 2, 4]


@pytest.mark.parametrize(("share", "period"), [(0.1, 10), (0.2, 5), (0.3, 3), (0.5, 2), (1.0, 1), (0.0, None)])
def test_the_starvation_period_is_floor_of_one_over_the_share(share: float, period: int | None) -> None:
    assert LanePolicy(share).period == period


def test_interactive_jobs_go_first_even_when_bulk_ones_were_fetched_earlier() -> None:
    pending = _pending()
    for _ in range(3):
        pending.push(_job("bulk"))
    pending.push(_job("interactive"))
    pending.push(_job("interactive"))
    assert _lanes_taken(pending, 5) == "IIBBB"


def test_while_both_wait_one_start_in_ten_is_bulk() -> None:
    pending = _pending(bulk_min_share=0.1)
    for _ in range(5):
        pending.push(_job("bulk"))
    for _ in range(30):
        pending.push(_job("interactive"))
    assert _lanes_taken(pending, 35) == ("I" * 9 + "B") * 3 + "IIIBB"


def test_a_share_of_zero_is_strict_priority() -> None:
    pending = _pending(bulk_min_share=0)
    pending.push(_job("bulk"))
    for _ in range(20):
        pending.push(_job("interactive"))
    assert _lanes_taken(pending, 21) == "I" * 20 + "B"


def test_bulk_waits_while_it_holds_every_render_slot_it_may() -> None:
    pending = _pending()
    pending.push(_job("bulk"))
    assert pending.take(bulk_allowed=False) is None
    pending.push(_job("interactive"))
    taken = pending.take(bulk_allowed=False)
    assert taken is not None and pending.lane(taken[0]) == "interactive"
    taken = pending.take()
    assert taken is not None and pending.lane(taken[0]) == "bulk"


def test_bulk_goes_ahead_of_interactive_jobs_their_tenants_quota_defers() -> None:
    pending = _pending(tenant_max_inflight=1)
    pending.push(_job("interactive", tenant="busy"))
    pending.push(_job("interactive", tenant="busy"))
    pending.push(_job("bulk", tenant="importer"))
    first, second = pending.take(), pending.take()
    assert first is not None and second is not None
    assert [pending.lane(first[0]), pending.lane(second[0])] == ["interactive", "bulk"]  # "busy" is at its limit
    assert pending.take() is None
    assert (pending.waiting("interactive"), pending.waiting("bulk"), len(pending)) == (1, 0, 1)


def test_removal_and_iteration_cover_both_lanes() -> None:
    pending = _pending()
    bulk, interactive = _job("bulk"), _job("interactive")
    pending.push(bulk)
    pending.push(interactive)
    assert set(map(id, pending)) == {id(bulk), id(interactive)}
    assert pending.drop([bulk.tp]) == [bulk]
    assert (pending.waiting("bulk"), pending.waiting("interactive")) == (0, 1)


def test_a_full_queue_gives_up_deferred_jobs_of_both_lanes() -> None:
    pending = _pending(max_pending_jobs=4, tenant_max_inflight=1)
    for lane in ("interactive", "interactive", "bulk", "bulk"):
        pending.push(_job(lane, tenant=f"{lane}-tenant"))
    held = [pending.take(), pending.take()]  # one of each tenant admitted and still running: the rest are deferred
    assert all(taken is not None for taken in held)
    given_up = pending.overflow()  # 2 left of a limit of 4: not full
    assert given_up == []
    for lane in ("interactive", "bulk"):
        pending.push(_job(lane, tenant=f"{lane}-tenant"))
        pending.push(_job(lane, tenant=f"{lane}-tenant"))
    assert len(pending) == 6
    given_up = pending.overflow()  # full: each lane gives up deferred jobs until half of its own share is free
    assert sorted(pending.lane(job) for job, decision in given_up) == ["bulk", "interactive"]
    assert {decision.action for _, decision in given_up} == {"defer"}
    assert (pending.waiting("interactive"), pending.waiting("bulk")) == (2, 2)


@settings(max_examples=200, deadline=None)
@given(
    share=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
    steps=st.lists(st.sampled_from(["push-interactive", "push-bulk", "take"]), max_size=120),
)
def test_interactive_first_and_the_share_bound_hold_for_any_arrivals(share: float, steps: list[str]) -> None:
    pending = _pending(bulk_min_share=share, max_pending_jobs=1_000)
    period = LanePolicy(share).period
    assert period is not None
    run = 0  # interactive starts in a row while bulk waited
    for step in steps:
        if step != "take":
            pending.push(_job("bulk" if step == "push-bulk" else "interactive"))
            continue
        interactive, bulk = pending.waiting("interactive"), pending.waiting("bulk")
        taken = pending.take()
        if not interactive and not bulk:
            assert taken is None
            continue
        assert taken is not None
        lane = pending.lane(taken[0])
        pending.release(taken[0])
        if lane == "bulk":
            assert bulk and (not interactive or run == period - 1), "bulk only when owed or nothing interactive waits"
            run = 0
        else:
            assert not bulk or run < period - 1, "bulk is owed its share"
            run = run + 1 if bulk else 0


# --- The consume loop's part ---------------------------------------------------------------------------------


class _WatchedConsumer(FakeConsumer):
    """Notes, at each fetch, whether the bulk partition was paused while it still had records to give."""

    def __init__(self, listener: Any, records: dict[TopicPartition, list[Any]], bulk: TopicPartition) -> None:
        super().__init__(listener, records)
        self._bulk = bulk
        self.bulk_held: list[bool] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self.positions[self._bulk] < len(self.records[self._bulk]):
            self.bulk_held.append(self._bulk in self.paused())
        return await super().getmany(timeout_ms=timeout_ms, max_records=max_records)


async def _burst(
    records: dict[TopicPartition, list[Any]], settings: Settings, pipeline: FakePipeline, publisher: FakePublisher
) -> _WatchedConsumer:
    """Run the real worker over a fake consumer of `records` until everything is answered; the consumer it used."""
    consumers: list[_WatchedConsumer] = []

    def factory(listener: Any) -> _WatchedConsumer:
        consumers.append(_WatchedConsumer(listener, records, TopicPartition(settings.bulk_topic, 0)))
        return consumers[-1]

    runner = JobRunner(
        settings=settings,
        publisher=publisher,  # type: ignore[arg-type]
        pipeline=pipeline,  # type: ignore[arg-type]
        identity=IDENTITY,
        metrics=Metrics(),
    )
    scheduler = JobScheduler(settings, runner, Metrics(), events=asyncio.Queue())
    worker = ConsumeLoop(settings=settings, consumer_factory=factory, scheduler=scheduler, metrics=Metrics())  # type: ignore[arg-type]
    await asyncio.wait_for(worker.run(asyncio.Event(), burst=True), 10)
    [consumer] = consumers
    return consumer


async def test_the_loop_fetches_a_bulk_backlog_a_few_records_ahead_and_serves_interactive_first() -> None:
    requests, bulk = TopicPartition(REQUESTS, 0), TopicPartition(BULK, 0)
    records = {
        requests: [consumed(REQUESTS, 0, 0, request_body("merchant"))],
        bulk: [consumed(BULK, 0, offset, request_body(f"bulk-{offset:02d}")) for offset in range(20)],
    }
    settings = Settings(requests_topic=REQUESTS, bulk_topic=BULK, max_inflight_jobs=2, max_pending_jobs=16)
    pipeline, publisher = FakePipeline(), FakePublisher()
    consumer = await _burst(records, settings, pipeline, publisher)

    assert pipeline.attempts[0] == ("merchant", 1)
    assert sorted(result.request_id for result in publisher.results) == sorted(
        ["merchant", *(f"bulk-{offset:02d}" for offset in range(20))]
    )  # records fetched past the prefetch were read again, none lost
    assert any(consumer.bulk_held), "the bulk partition is paused while enough bulk work is at hand"
    assert consumer.committed() == {requests: 1, bulk: 20}


async def test_a_failing_bulk_request_takes_the_retry_topic_and_forged_retry_headers_count_for_nothing() -> None:
    """Producers write the bulk topic, so retry-state headers there are whatever a client sent: a forged not-before
    time must not hold the partition, a forged round must not skip the retry topic. The retry copy is the request
    unchanged, so it comes back in the bulk lane."""
    far = str(int(time.time() * 1000) + 86_400_000).encode()
    forged = [("vidgen-attempt", b"7"), ("vidgen-retry-round", b"9"), ("vidgen-not-before-ms", far)]
    body = request_body("catalog-1", prompt="a catalog item that fails once", priority="bulk")
    bulk = TopicPartition(BULK, 0)
    settings = Settings(
        requests_topic=REQUESTS, bulk_topic=BULK, retry_topic=RETRY, retry_attempts=1, retry_topic_rounds=1
    )
    pipeline, publisher = FakePipeline({body["prompt"]: [StorageError("S3 said 503")]}), FakePublisher()
    consumer = await _burst({bulk: [consumed(BULK, 0, 0, body, headers=forged)]}, settings, pipeline, publisher)

    assert pipeline.attempts == [("catalog-1", 1)]
    assert publisher.results == publisher.dead_letters == []
    [(record, headers)] = publisher.retries
    assert (dict(headers)["vidgen-attempt"], dict(headers)["vidgen-retry-round"]) == (b"2", b"1")
    assert VideoRequest.model_validate_json(record.value).priority == "bulk"
    assert lane_of("bulk", topic=RETRY, bulk_topic=BULK) == "bulk"
    assert consumer.committed() == {bulk: 1}
