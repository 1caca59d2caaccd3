"""Issue 25's last gaps without a broker: a batch says which queues it moved (a job joined or left one), and the
listeners wake only the open streams of queued jobs in those queues; a job keeps the fallback choice its request
record named (only the known values), through the view's file, including a file from before the column."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from bench import queue_wakes
from consumer.api.submission.shedding import Limits, shed
from consumer.api.view.database import BatchOutcome
from consumer.api.view.job_state import Answered, JobState, Submitted, apply
from consumer.api.view.job_store import JobStore
from consumer.api.view.listeners import Listeners
from consumer.core.degrade import fallback_of
from schemas.events import VideoRequest
from tests.unit.test_view_retention import at, completed, started, submitted


async def test_a_batch_names_the_queues_a_job_joined_or_left(tmp_path: Path) -> None:
    store = JobStore(str(tmp_path / "view.sqlite3"))
    await store.open()
    try:
        joined = await store.apply([submitted("a", 1), submitted("b", 2, priority="bulk")])
        assert joined.queues == {"queued", "bulk:queued"}
        left = await store.apply([started("a", 3)])
        assert left.queues == {"queued"}
        assert (await store.apply([started("a", 4)])).queues == set()  # it was not queued: no place moved
        assert (await store.apply([completed("a", 5)])).queues == set()
        assert (await store.apply([completed("b", 6)])).queues == {"bulk:queued"}
    finally:
        await store.close()


def test_listeners_wake_only_the_streams_of_the_queues_moved() -> None:
    listeners = Listeners()
    with listeners.watch("a") as a, listeners.watch("b") as b, listeners.watch("c") as c:
        listeners.follow_queue(a, "queued")
        listeners.follow_queue(b, "bulk:queued")
        listeners.notify(BatchOutcome(queues={"queued"}))
        assert (a.is_set(), b.is_set(), c.is_set()) == (True, False, False)
        a.clear()
        listeners.follow_queue(a, None)  # its job started: no queue wakes it any more
        listeners.notify(BatchOutcome(queues={"queued", "bulk:queued"}))
        assert (a.is_set(), b.is_set()) == (False, True)
    listeners.notify(BatchOutcome(queues={"bulk:queued"}))  # the streams ended: nothing is kept for them
    assert len(listeners) == 0 and not listeners._queues and not listeners._queue_of


def test_only_the_known_fallbacks_are_read_from_a_header() -> None:
    values = (b"similar", b"template", b"none", None, b"SIMILAR", b"<script>", b"x" * 1000)
    assert [fallback_of(value) for value in values] == ["similar", "template", "none", None, None, None, None]


def test_a_request_read_after_its_result_still_gives_the_fallback() -> None:
    answered = apply(None, completed("a", 2))
    assert isinstance(answered, JobState) and answered.fallback is None
    request = VideoRequest(request_id="a", tenant_id="shop-a", prompt="a lamp")
    state = apply(answered, Submitted(request, at(1), fallback="similar"))
    assert isinstance(state, JobState) and (state.status, state.fallback) == ("completed", "similar")


async def test_the_fallback_survives_the_file_and_an_old_file_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:  # the jobs table as the release before the column wrote it
        old.execute(
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, status TEXT NOT NULL, "
            "progress INTEGER NOT NULL, attempt INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, "
            "version INTEGER NOT NULL, request TEXT, result TEXT, cancel_requested_at REAL)"
        )
        old.execute(
            "INSERT INTO jobs VALUES ('old', 'shop-a', 'queued', 0, 1, ?, ?, 1, NULL, NULL, NULL)",
            (at(0).timestamp(), at(0).timestamp()),
        )
    store = JobStore(str(path))
    await store.open()
    try:
        assert (await store.get("shop-a", "old")).fallback is None  # type: ignore[union-attr]
        request = VideoRequest(request_id="new", tenant_id="shop-a", prompt="a lamp")
        await store.apply([Submitted(request, at(1), fallback="template")])
    finally:
        await store.close()
    reopened = JobStore(str(path), cached_jobs=0)
    await reopened.open()
    try:
        assert (await reopened.get("shop-a", "new")).fallback == "template"  # type: ignore[union-attr]
    finally:
        await reopened.close()


async def test_renders_that_took_no_time_leave_a_positive_service_time(tmp_path: Path) -> None:
    store = JobStore(str(tmp_path / "view.sqlite3"))
    await store.open()
    try:
        instant = completed("a", 5)
        timings = instant.result.timings.model_copy(update={"render_started_at": at(5)})
        await store.apply([submitted("a", 1), Answered(instant.result.model_copy(update={"timings": timings}), at(5))])
        stats = store.queue_stats(now=at(6), active_s=60, default_service_s=30)
        assert stats.service_s > 0  # shedding divides by it
        limits = Limits(max_queued=1, max_wait_s=10, tenant_max_queued=5, tenant_max_wait_s=60)
        assert (
            shed(dataclasses.replace(stats, workers_active=1), tenant="shop-a", lane="interactive", limits=limits)
            is None
        )
    finally:
        await store.close()


async def test_the_queue_wakes_benchmark_runs_tiny_and_wakes_only_the_queue_moved() -> None:
    report = await queue_wakes.measure(queued=20, tenants=3, streams=5)
    assert (report["streams_open"], report["streams_woken"]) == (10, 5)  # the bulk lane's streams slept
    assert report["places_ms"] >= 0 and report["batch_ms"] >= 0
