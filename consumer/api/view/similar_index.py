"""The similar-video fallback's index in the view: each tenant's completed, non-degraded, not deleted videos by the
print of their start image (`consumer.core.similar`), so that a lookup reads a few rows of the caller's own tenant.

Table `image_keys (tenant_id, key, completed_at, job_id, image_print, width, height)`, its primary key the first
four in that order: a job is stored under its print's SHA-256 key and, when its perceptual hash is informative, one
key per band, each row with what the rules judge (the print, the video's size). A lookup reads, for each key of the
new print, the most recent rows of the caller's tenant under it (one index range each, at most MAX_CANDIDATES), lets
the pure rules choose among them and loads the one job chosen. Another tenant's rows are never read, so whether they
exist changes neither the answer nor how long it takes (beyond the depth of one B-tree); nothing else (no object
store) is asked when nothing matches. A job leaves the index when it is deleted, and with its row (retention, the
per-tenant cap: a trigger of the schema).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from consumer.api.view.job_state import JobState
from consumer.api.view.schema import COLUMNS, dt, state_of, ts
from consumer.core.similar import Candidate, ImagePrint, best_match, index_keys

__all__ = ["MAX_CANDIDATES", "reindex", "similar_video"]

MAX_CANDIDATES = 50
"""The most rows one lookup reads per key (the most recent first): a tenant that uploaded one photo thousands of
times still costs a bounded lookup, answered from its most recent videos of it."""
_JOB = f"SELECT {COLUMNS} FROM jobs WHERE id = ? AND tenant_id = ?"  # noqa: S608 - constant columns
_KEY_ROWS = (
    "SELECT job_id, image_print, width, height, completed_at FROM image_keys WHERE tenant_id = ? AND key = ? "
    "ORDER BY completed_at DESC, job_id DESC LIMIT ?"
)


def _indexed(state: JobState) -> tuple[ImagePrint, Candidate] | None:
    """The print `state` is indexed under and its candidate, or None when it is not to be in the index."""
    if state.status != "completed" or state.degraded or state.deleted_at is not None or state.image_print is None:
        return None
    video = (state.result or {}).get("video")
    image = ImagePrint.of_text(state.image_print)
    if not video or image is None or state.result is None:
        return None
    completed = datetime.fromisoformat(state.result["timings"]["completed_at"])
    return image, Candidate(state.id, image, int(video["width"]), int(video["height"]), completed)


def reindex(db: sqlite3.Connection, states: Iterable[JobState]) -> None:
    """Bring the index up to date with these changed jobs (inside the caller's transaction)."""
    for state in states:
        if state.image_print is None:
            continue  # never indexed
        indexed = _indexed(state)
        if indexed is None:
            db.execute("DELETE FROM image_keys WHERE job_id = ?", (state.id,))
            continue
        image, candidate = indexed
        db.executemany(
            "INSERT OR IGNORE INTO image_keys (tenant_id, key, completed_at, job_id, image_print, width, height) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    state.tenant_id,
                    key,
                    ts(candidate.completed_at),
                    state.id,
                    image.text,
                    candidate.width,
                    candidate.height,
                )
                for key in index_keys(image)
            ],
        )


def similar_video(
    db: sqlite3.Connection, tenant_id: str, image: ImagePrint, width: int, height: int
) -> JobState | None:
    """The tenant's video to answer a request of `width` x `height` with start image `image`, or None: the best match
    (`consumer.core.similar.best_match`) among the videos sharing a key with it (the most recent MAX_CANDIDATES of
    each key), judged from the index's rows; only the chosen job's row is read."""
    candidates: dict[str, Candidate] = {}
    for key in index_keys(image):
        for job_id, text, video_width, video_height, completed_at in db.execute(
            _KEY_ROWS, (tenant_id, key, MAX_CANDIDATES)
        ):
            if job_id in candidates:
                continue  # under another key of this print too
            stored = ImagePrint.of_text(text)
            if stored is not None:
                candidates[job_id] = Candidate(job_id, stored, video_width, video_height, dt(completed_at))
    best = best_match(image, width, height, candidates.values())
    if best is None:
        return None
    row = db.execute(_JOB, (best.job_id, tenant_id)).fetchone()
    return state_of(row) if row is not None else None
