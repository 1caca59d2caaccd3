"""A job's lifecycle as an explicit state machine: the phases a fetched request goes through until it is answered
(or given up), and the transitions allowed between them. Pure.

    queued -> admitted -> started -> rendering -> render_ended -> encoding -> uploading -> answered

- `queued`: fetched and parsed, waiting in the pending queue for a render slot and its tenant's turn.
- `admitted`: holds a render slot; its task runs (the scheduler).
- `started`: its start is recorded (the crash guard) and an attempt runs: moderation, start image, memory admission.
  A retry starts the next attempt here again, from wherever the failed one got to.
- `rendering`: waits for the model, then renders.
- `render_ended`: no longer needs the model (its render ended, a cache hit made one unnecessary, or its answer is final
  without one): its render slot goes to the next job.
- `encoding`, `uploading`: the MP4 and poster are made, then stored.
- `answered`: its answer (result, dead letter or retry-topic copy) is acknowledged; its offset may be committed.
- `abandoned`: given up unanswered (revoked, shut down, or its task ended without an answer): read again later.

A job can be answered from any phase before `answered` (a cancel or a refusal answers it without starting, a failure
answers it where it happened) and abandoned from any phase too. Anything else raises `IllegalTransition`: a bug in
whoever drives the job (the scheduler, the job runner, the pipeline), never a request's fault.
"""

from __future__ import annotations

from enum import StrEnum

from consumer.errors import IllegalTransition

__all__ = ["TRANSITIONS", "Lifecycle", "Phase"]


class Phase(StrEnum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    STARTED = "started"
    RENDERING = "rendering"
    RENDER_ENDED = "render_ended"
    ENCODING = "encoding"
    UPLOADING = "uploading"
    ANSWERED = "answered"
    ABANDONED = "abandoned"


_ENDS = frozenset({Phase.ANSWERED, Phase.ABANDONED})
_RETRY = frozenset({Phase.STARTED})

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.QUEUED: frozenset({Phase.ADMITTED}) | _ENDS,
    Phase.ADMITTED: frozenset({Phase.STARTED}) | _ENDS,
    Phase.STARTED: frozenset({Phase.RENDERING, Phase.RENDER_ENDED}) | _RETRY | _ENDS,
    Phase.RENDERING: frozenset({Phase.RENDER_ENDED}) | _RETRY | _ENDS,
    Phase.RENDER_ENDED: frozenset({Phase.ENCODING}) | _RETRY | _ENDS,
    Phase.ENCODING: frozenset({Phase.UPLOADING}) | _RETRY | _ENDS,
    Phase.UPLOADING: _RETRY | _ENDS,
    Phase.ANSWERED: frozenset(),
    Phase.ABANDONED: frozenset(),
}
"""For each phase, the phases it may move to."""


class Lifecycle:
    """One job's phase and the path it took. Moved on the event loop only, by whoever drives that part of the job."""

    def __init__(self) -> None:
        self.history: list[Phase] = [Phase.QUEUED]

    @property
    def phase(self) -> Phase:
        return self.history[-1]

    @property
    def past_render(self) -> bool:
        """The job no longer needs the model: its render ended (or was found unnecessary)."""
        return self.phase in (Phase.RENDER_ENDED, Phase.ENCODING, Phase.UPLOADING)

    def advance(self, to: Phase) -> None:
        """Move to `to`; raises `IllegalTransition` when the machine does not allow it from the current phase."""
        if to not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"a job cannot go from {self.phase} to {to}")
        self.history.append(to)
