"""The pure parts of request controls: the cancel index, the crash guard's counts and verdict, a job's stop signal
and its deadline; and the deadlines producers set (`vidgen submit --deadline-in`, the product hook)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumer.cancellation.commands import CancelCommand, CancelIndex, IgnoredCommand, cancelled_error
from consumer.core.job import StopSignal, past_deadline
from consumer.core.moderation import ContentPolicy
from consumer.crash_guard.counts import StartCounts, StartsValue, crash_verdict, starts_key, starts_value
from consumer.errors import Cancelled, Expired, WorkerCrashed
from producer_examples import command_line, publish_request
from producer_examples.products import DEFAULT_TEMPLATE, ProductCreated
from producer_examples.products import build_request as build_product_request
from tests.support import NOW


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def control(request_id: str = "r1", tenant_id: str = "shop-1", **overrides: Any) -> bytes:
    body = {
        "schema_version": 1,
        "action": "cancel",
        "request_id": request_id,
        "tenant_id": tenant_id,
        "requested_at": NOW.isoformat(),
        **overrides,
    }
    return json.dumps(body).encode()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index(clock: Clock) -> CancelIndex:
    return CancelIndex(retention_s=3600, clock=clock)


def test_a_cancel_applies_to_its_own_tenant_only(index: CancelIndex) -> None:
    update = index.apply(b"r1", control(), logged_at=NOW)
    assert isinstance(update, CancelCommand) and (update.request_id, update.tenant_id) == ("r1", "shop-1")
    assert index.cancel_of("r1", "shop-1") == update
    assert index.cancel_of("r1", "shop-2") is None
    assert index.cancel_of("r2", "shop-1") is None


def test_a_wrong_tenants_command_never_shadows_or_replaces_the_right_ones(index: CancelIndex) -> None:
    right = index.apply(b"r1", control(tenant_id="shop-1"), logged_at=NOW)
    wrong = index.apply(b"r1", control(tenant_id="intruder"), logged_at=NOW + timedelta(seconds=1))
    assert isinstance(wrong, CancelCommand)  # new to the index; the scheduler decides it is foreign
    assert index.cancel_of("r1", "shop-1") == right
    assert index.foreign("r1", "shop-1") == 1
    assert index.foreign("r1", "intruder") == 1
    assert len(index) == 2


def test_a_repeated_command_is_not_new(index: CancelIndex) -> None:
    assert index.apply(b"r1", control(), logged_at=NOW) is not None
    assert index.apply(b"r1", control(), logged_at=NOW + timedelta(seconds=5)) is None
    assert len(index) == 1


def test_a_tombstone_withdraws_every_command_under_its_key(index: CancelIndex) -> None:
    index.apply(b"r1", control(tenant_id="shop-1"), logged_at=NOW)
    index.apply(b"r1", control(tenant_id="shop-2"), logged_at=NOW)
    index.apply(b"r2", control("r2"), logged_at=NOW)
    assert index.apply(b"r1", None, logged_at=NOW) is None
    assert index.cancel_of("r1", "shop-1") is None and index.cancel_of("r1", "shop-2") is None
    assert index.cancel_of("r2", "shop-1") is not None
    assert index.apply(None, None, logged_at=NOW) is None  # a keyless tombstone changes nothing


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"r1", b"not json", "invalid"),
        (b"r1", control(action="pause"), "invalid"),
        (b"r1", control(extra="field"), "invalid"),
        (b"r1", control(tenant_id="../etc"), "invalid"),
        (b"r1", control(requested_at="2026-01-01T00:00:00"), "invalid"),  # no UTC offset
        (b"r2", control("r1"), "key_mismatch"),
        (b"\xff", control("r1"), "key_mismatch"),
        (None, control("r1"), "key_mismatch"),
    ],
)
def test_unusable_commands_are_ignored_with_a_reason(
    index: CancelIndex, key: bytes | None, value: bytes, reason: str
) -> None:
    assert index.apply(key, value, logged_at=NOW) == IgnoredCommand(reason)  # type: ignore[arg-type]
    assert len(index) == 0


def test_commands_are_forgotten_past_the_retention(index: CancelIndex, clock: Clock) -> None:
    assert index.apply(b"old", control("old"), logged_at=NOW - timedelta(hours=2)) is None  # already past it
    index.apply(b"r1", control(), logged_at=NOW)
    clock.now = NOW + timedelta(minutes=59)
    assert index.cancel_of("r1", "shop-1") is not None
    clock.now = NOW + timedelta(minutes=61)
    assert index.cancel_of("r1", "shop-1") is None
    assert index.foreign("r1", "shop-2") == 0
    assert index.prune() == 1 and len(index) == 0


def test_the_cancelled_answer_is_final_and_says_when_it_was_asked() -> None:
    command = CancelCommand("r1", "shop-1", NOW, NOW)
    error = cancelled_error(command)
    assert isinstance(error, Cancelled) and error.code == "cancelled" and not error.retriable and not error.rejects
    assert NOW.isoformat() in error.message


def test_attempt_keys_name_the_records_position() -> None:
    assert starts_key("video-renderers", "video.requests", 3, 1207) == b"video-renderers/video.requests/3/1207"


def test_attempt_counts_follow_values_and_tombstones_in_order() -> None:
    counts = StartCounts()
    key = starts_key("g", "t", 0, 5)
    value = starts_value(2, worker_id="w1", at=NOW)
    assert value is not None and StartsValue.model_validate_json(value).starts == 2
    counts.apply(key, value)
    assert counts.starts(key) == 2
    counts.apply(key, b"{not json")  # unreadable: changes nothing
    counts.apply(None, value)
    assert counts.starts(key) == 2 and len(counts) == 1
    counts.apply(key, None)
    assert counts.starts(key) == 0 and len(counts) == 0
    counts.set(key, 1)
    counts.set(key, 0)
    assert len(counts) == 0


def test_a_count_of_zero_is_written_as_a_tombstone() -> None:
    assert starts_value(0, worker_id="w1", at=NOW) is None


@pytest.mark.parametrize(("previous", "limit", "refused"), [(0, 2, False), (1, 2, False), (2, 2, True), (3, 2, True)])
def test_the_crash_verdict_refuses_a_record_once_its_deaths_reach_the_limit(
    previous: int, limit: int, refused: bool
) -> None:
    verdict = crash_verdict(previous, limit=limit)
    assert (verdict is not None) == refused
    if verdict is not None:
        assert isinstance(verdict, WorkerCrashed) and not verdict.retriable and verdict.code == "worker_crashed"
        assert f"{previous} workers died" in verdict.message


async def test_a_stop_signal_raises_its_first_reason_where_it_is_noticed() -> None:
    stop = StopSignal()
    stop.check("queued")  # nothing requested: nothing happens
    waiting = asyncio.create_task(stop.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    stop.request(Cancelled("cancelled by its tenant"))
    stop.request(Expired("too late"))  # the first request wins
    await asyncio.wait_for(waiting, 1)
    with pytest.raises(Cancelled, match="cancelled by its tenant"):
        stop.check("rendering")
    assert stop.requested and stop.stopped_in == "rendering"


def test_a_deadline_passes_only_after_its_instant() -> None:
    assert past_deadline(None, now=NOW) is None
    assert past_deadline(NOW, now=NOW) is None
    expired = past_deadline(NOW, now=NOW + timedelta(seconds=90))
    assert isinstance(expired, Expired) and expired.code == "expired" and not expired.retriable
    assert "passed 90.0 s before its render started" in expired.message


async def test_a_job_waiting_for_the_model_stops_without_waiting_for_its_holder() -> None:
    lock, stop = asyncio.Lock(), StopSignal()
    await lock.acquire()  # another job renders
    waiting = asyncio.create_task(stop.acquire(lock))
    await asyncio.sleep(0.01)
    stop.request(Cancelled("cancelled by its tenant"))
    with pytest.raises(Cancelled):
        await asyncio.wait_for(waiting, 1)
    assert stop.stopped_in == "queued"
    lock.release()
    assert not lock.locked()  # the stopped waiter never took it
    await asyncio.wait_for(lock.acquire(), 1)  # and the next one gets it


async def test_a_job_takes_the_free_model_and_a_cancelled_wait_leaves_it_free() -> None:
    lock = asyncio.Lock()
    await StopSignal().acquire(lock)
    assert lock.locked()
    waiting = asyncio.create_task(StopSignal().acquire(lock))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    lock.release()
    assert not lock.locked()


def test_submit_deadline_in_sets_the_deadline_that_far_ahead_and_refuses_a_past_one() -> None:
    args = publish_request.submit_parser("vidgen submit").parse_args(["--prompt", "a vase", "--deadline-in", "60"])
    request = publish_request.build_request(args, image_url=None)
    assert request.deadline is not None
    assert 55 < (request.deadline - datetime.now(UTC)).total_seconds() <= 60
    assert publish_request.main(["--prompt", "a vase", "--deadline-in", "0"]) == command_line.EXIT_USAGE


def test_the_hooks_deadline_is_not_part_of_the_request_id() -> None:
    product = ProductCreated.model_validate(
        {"product_id": "p-1", "shop_id": "shop-1", "title": "Red sneaker", "description": "Mesh."}
    )
    rules: dict[str, Any] = {
        "template": DEFAULT_TEMPLATE,
        "render": {"width": 256, "height": 256, "num_frames": 5, "num_inference_steps": 2},
        "id_key": b"request-id-key-for-tests-only-0123456789",
        "policy": ContentPolicy(()),
        "max_record_bytes": 1 << 20,
    }
    today = build_product_request(product, deadline=NOW, **rules)
    retried = build_product_request(product, deadline=NOW + timedelta(hours=1), **rules)
    assert today.request_id == retried.request_id  # a retried webhook names the same request
    assert (today.deadline, retried.deadline) == (NOW, NOW + timedelta(hours=1))
