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
    "step_phase",
    "work_percent",
]

PHASE_SHARES: dict[ProgressPhase, float] = {
    "preparing": 4.0,
    "denoising": 38.0,
    "decoding": 27.0,
    "encoding": 22.0,
    "uploading": 9.0,
}
"""Percent of a job's time (received by a worker to result) each phase took, median over tiny-model renders of the
default size on a CPU worker (`bench.phase_shares`). They add up to 100."""

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
