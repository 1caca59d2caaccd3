"""Settings of render checkpoints and preemption (`CheckpointSettings`): when a render's state is saved at a step
boundary, how long a stored one lives, and whether bulk renders pause for waiting interactive requests."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CheckpointSettings"]


class CheckpointSettings(BaseSettings):
    """Render checkpoints (docs/concepts/checkpoints.md)."""

    model_config = SettingsConfigDict(env_prefix="VIDGEN_", extra="ignore", frozen=True, hide_input_in_errors=True)

    checkpoints: bool = Field(
        True,
        description="Checkpoint renders at step boundaries: on SIGTERM and on revocation a rendering job saves its "
        "state to object storage and hands its record back (the next owner resumes it), and a job whose checkpoint "
        "exists resumes from it. Off: a stopping worker finishes or abandons its renders, as before.",
    )
    checkpoint_interval_s: float = Field(
        60.0,
        ge=0,
        description="Also save a rendering job's state this often (uploaded in the background), so a worker killed "
        "without warning (kill -9, a lost node) loses at most this much of a render; 0: only when stopping or "
        "preempted.",
    )
    checkpoint_expire_days: int = Field(
        2,
        ge=1,
        description="The lifecycle rule on `<prefix>checkpoints/` expires a checkpoint nobody deleted (its request "
        "was never answered) after this many days; applied when the worker creates the bucket "
        "(`VIDGEN_S3_CREATE_BUCKET`), otherwise set it yourself (docs/operations.md).",
    )
    preemption: bool = Field(
        True,
        description="Pause a bulk render at its next step (state kept in memory) when an interactive request waits "
        "for the model, and resume it when the model is free again. Needs `VIDGEN_CHECKPOINTS`.",
    )
    max_preemptions: int = Field(
        2, ge=0, description="How many times one bulk render may be paused for interactive requests."
    )
