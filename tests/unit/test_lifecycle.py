"""A job's lifecycle: the phases, the transitions the machine allows and refuses, and what a job's track posts."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition

from consumer.core.job import Job
from consumer.core.job_events import JobEvent, JobTrack, RenderEnded, RenderProgress
from consumer.core.lifecycle import TRANSITIONS, Lifecycle, Phase
from consumer.errors import IllegalTransition, VidgenError
from schemas.events import VideoRequest
from tests.support import consumed, request_body

TP = TopicPartition("video.requests", 0)
WORK = [Phase.STARTED, Phase.RENDERING, Phase.RENDER_ENDED, Phase.ENCODING, Phase.UPLOADING]
ENDS = {Phase.ANSWERED, Phase.ABANDONED}


def _at(*path: Phase) -> Lifecycle:
    lifecycle = Lifecycle()
    for phase in path:
        lifecycle.advance(phase)
    return lifecycle


def test_the_happy_path_goes_through_every_phase_in_order() -> None:
    lifecycle = _at(Phase.ADMITTED, *WORK, Phase.ANSWERED)
    assert lifecycle.history == [Phase.QUEUED, Phase.ADMITTED, *WORK, Phase.ANSWERED]
    assert TRANSITIONS[lifecycle.phase] == frozenset()  # nothing more happens to it


@pytest.mark.parametrize(("origin", "to"), list(itertools.product(Phase, Phase)))
def test_a_transition_is_allowed_exactly_when_the_table_says_so(origin: Phase, to: Phase) -> None:
    lifecycle = Lifecycle()
    lifecycle.history = [origin]  # placed there directly: each pair is checked on its own
    if to in TRANSITIONS[origin]:
        lifecycle.advance(to)
        assert lifecycle.phase == to
    else:
        with pytest.raises(IllegalTransition, match=f"from {origin} to {to}"):
            lifecycle.advance(to)
        assert lifecycle.phase == origin  # a refused transition changes nothing


def test_the_machine_says_where_each_phase_may_go() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert all(TRANSITIONS[end] == frozenset() for end in ENDS)  # nothing happens after the end
    for phase in set(Phase) - ENDS:
        assert TRANSITIONS[phase] >= ENDS  # answered (a cancel, a refusal, a failure) or given up from anywhere
    for phase in WORK:
        assert Phase.STARTED in TRANSITIONS[phase]  # a retry starts the next attempt from wherever the last got to
    # Nothing skips admission, and the render ends before encoding and uploading.
    assert Phase.STARTED not in TRANSITIONS[Phase.QUEUED]
    assert Phase.ENCODING not in TRANSITIONS[Phase.RENDERING] | TRANSITIONS[Phase.STARTED]
    assert Phase.UPLOADING not in TRANSITIONS[Phase.RENDER_ENDED]


def test_every_phase_is_reachable_from_queued() -> None:
    reached, frontier = {Phase.QUEUED}, [Phase.QUEUED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()] - reached:
            reached.add(nxt)
            frontier.append(nxt)
    assert reached == set(Phase)


def test_an_illegal_transition_is_a_bug_answered_as_an_internal_error() -> None:
    with pytest.raises(VidgenError) as raised:
        _at(Phase.ADMITTED, Phase.ANSWERED).advance(Phase.STARTED)
    assert (raised.value.code, raised.value.retriable) == ("internal_error", False)


class _Queue:
    def __init__(self) -> None:
        self.posted: list[JobEvent] = []

    def put_nowait(self, item: JobEvent, /) -> None:
        self.posted.append(item)


def _admitted_job() -> Job:
    body = request_body("r1")
    job = Job(TP, consumed(TP.topic, 0, 0, body), VideoRequest.model_validate(body), datetime.now(UTC))
    job.lifecycle.advance(Phase.ADMITTED)
    return job


def test_a_track_moves_its_job_and_posts_what_the_scheduler_reacts_to() -> None:
    job, queue = _admitted_job(), _Queue()
    track = JobTrack(job, queue)
    track.start()
    track.rendering()
    track.progress(1, 2)
    track.progress(2, 2)
    track.render_ended()
    track.encoding()
    track.uploading()
    assert job.lifecycle.history == [Phase.QUEUED, Phase.ADMITTED, *WORK]
    assert queue.posted == [RenderProgress(job, 1, 2), RenderProgress(job, 2, 2), RenderEnded(job)]


def test_a_render_end_is_posted_once_even_when_a_retry_renders_again() -> None:
    job, queue = _admitted_job(), _Queue()
    track = JobTrack(job, queue)
    track.start()
    track.render_ended()  # a cache hit, say
    track.render_ended()  # the runner's "its answer is final": already past the render, nothing happens
    track.start()  # a retry of a failed upload
    track.rendering()
    track.render_ended()
    assert queue.posted == [RenderEnded(job)]
    assert job.lifecycle.phase == Phase.RENDER_ENDED


def test_a_track_refuses_what_the_machine_refuses() -> None:
    track = JobTrack(_admitted_job(), asyncio.Queue())
    with pytest.raises(IllegalTransition):
        track.encoding()  # nothing started, nothing rendered
