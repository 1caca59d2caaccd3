"""Deleting a deleted job's video and poster from the bucket, without taking them from any other job.

Objects are content-addressed per tenant (`consumer.core.keys.object_keys`): identical requests of one tenant share
one video (the worker's cache answers the second from the first's objects), and no two tenants ever share one. So a
job's objects are deleted only when no other job of its tenant in the view shows them or may yet be given them: one
whose result names them, or one still queued or rendering that asks for the same content (or whose request this
replica has not read yet). Otherwise they stay, as the other job's video.

The video goes first, then the poster: the video object is the worker's cache marker, so a cache lookup never finds
a video without its poster. A job deleted while it ran is cancelled; should its video arrive all the same (it
finished just before the cancel), the view hands it here when the result comes, and it is deleted then.

What this cannot see: an identical request of the same tenant that another replica accepted in the last moments
(before this replica's view read it) and that a worker answers from the cache between the check and the delete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from consumer.api.view.job_state import JobState, may_share_video
from consumer.api.view.job_store import JobStore
from consumer.errors import StorageError
from consumer.object_store import ObjectStore

__all__ = ["VideoDeletion", "VideoFate"]

log = logging.getLogger(__name__)

VideoFate = Literal["deleted", "kept", "none"]
"""What became of a deleted job's video: deleted, kept (another job shows it, or may), none (it had none)."""
_RECLAIM_TIMEOUT_S = 10.0  # the view waits this long at most for one late video's deletion


class VideoDeletion:
    def __init__(self, store: JobStore, objects: ObjectStore) -> None:
        self._store = store
        self._objects = objects

    async def delete_objects(self, state: JobState) -> VideoFate:
        """Delete the video and poster of `state` (a deleted job) unless another job shows them or may. Raises
        `StorageError`."""
        video = (state.result or {}).get("video") if state.status == "completed" else None
        if not video:
            return "none"
        keys = [self._objects.key_of(video["uri"]), self._objects.key_of(video["poster_uri"])]
        others = await self._store.sharing(state, video["uri"])
        if any(may_share_video(state, other, video["uri"]) for other in others):
            return "kept"
        for key in keys:
            if key is not None:
                await self._objects.delete(key)
        return "deleted"

    async def reclaim(self, states: Iterable[JobState]) -> None:
        """The live view changed these jobs: delete the video of each one deleted before its video came (the replica
        that answered the DELETE deleted those already there). Never called while the view catches up: records
        read then are history, and their deletions were done when they happened."""
        for state in states:
            if not _video_after_deletion(state):
                continue
            try:
                async with asyncio.timeout(_RECLAIM_TIMEOUT_S):
                    await self.delete_objects(state)
            except (StorageError, TimeoutError) as exc:
                log.warning("the video of deleted job %s stays in the bucket: %r", state.id, exc)


def _video_after_deletion(state: JobState) -> bool:
    if state.deleted_at is None or state.status != "completed" or state.result is None:
        return False
    return datetime.fromisoformat(state.result["timings"]["completed_at"]) >= state.deleted_at
