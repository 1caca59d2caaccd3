"""A job's phase and its progress as people see them: where it is (queued, waiting for a worker, each phase of the
worker's work, or how it ended) and how far along, weighted by each phase's measured share of a job's time. Pure.

The worker reports its phase on every progress event (`schemas.events.ProgressPhase`): `preparing` (moderation, the
start image, memory admission, the model), `denoising` (step by step), `decoding` (the VAE, after the last step),
`encoding` (MP4 and poster), `uploading`. A phase's share of the bar is what `PHASE_SHARES` says, measured on the tiny
model (`python -m bench.phase_shares`, figures in docs/benchmarks.md); within `denoising` the bar moves step by step.
Progress reaches 100 only once the job is completed: the last phase ends at `100 - PHASE_SHARES["uploading"]` when it
starts, and the result does the rest.
"""

from __future__ import annotations

from typing import get_args

from schemas.events import ProgressPhase
from schemas.job_api import JobPhase

__all__ = [
    "PHASE_SHARES",
    "JobPhase",
    "ended_phase",
    "id_parts",
    "step_phase",
    "work_percent",
]

PHASE_SHARES: dict[ProgressPhase, float] = {
    "preparing": 1.0,
    "denoising": 5.0,
    "decoding": 92.0,
    "encoding": 1.0,
    "uploading": 1.0,
}
"""Percent of a job's time (received by a worker to result) each phase took: medians measured with
`python -m bench.phase_shares --jobs 3` (tiny model, 256x256, 9 frames, 12 steps, a 2-core CPU worker: 10.2 s a
job; preparing 0.7 %, denoising 4.9 %, decoding 93.1 %, encoding 1.1 %, uploading 0.2 %), rounded to whole percents
that add up to 100 (the short phases at least 1). On that worker the VAE decode is most of a job."""

_ORDER: tuple[ProgressPhase, ...] = get_args(ProgressPhase)


def step_phase(step: int, total: int) -> ProgressPhase:
    """The phase after denoising step `step` of `total` ended: the VAE decodes once the last step is done."""
    return "decoding" if step >= total else "denoising"


def work_percent(phase: ProgressPhase, step: int, total: int) -> float:
    """Of the whole job, as the worker reports `phase` (and, while denoising, `step` of `total`): the shares of the
    phases before it, plus the steps done of the denoising share. Below 100: the result completes the job."""
    index = _ORDER.index(phase)
    done = sum(PHASE_SHARES[earlier] for earlier in _ORDER[:index])
    if phase == "denoising" and total > 0:
        done += PHASE_SHARES["denoising"] * min(step, total) / total
    return round(min(done, 99.0), 1)


def ended_phase(status: str, error_code: str | None) -> JobPhase:
    """The phase of a job that ended: `completed`, `cancelled` (its tenant cancelled it) or `failed` (every other
    failure and rejection)."""
    if status == "completed":
        return "completed"
    return "cancelled" if error_code == "cancelled" else "failed"


def id_parts(phase: ProgressPhase | None) -> tuple[str, ...]:
    """What a progress event's id adds to its (request, attempt, step): `encoding` and `uploading` carry the last
    step's number as `decoding` does, so they add their phase; every other event's id is as before phases existed."""
    return (phase,) if phase in ("encoding", "uploading") else ()
