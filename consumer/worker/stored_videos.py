"""A rendered video as the object store keeps it and a result shows it: the object metadata a cache hit answers from
without downloading the video, and the video info of a result with URLs presigned for it."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TypeGuard

from consumer.core.keys import ObjectKeys
from consumer.object_store import ObjectStore, StoredObject
from schemas.events import VideoInfo

__all__ = ["answers_from_cache", "stored_video", "video_info"]

# Object metadata that lets a cache hit answer without downloading the video.
_META_FIELDS = ("sha256", "width", "height", "num_frames", "fps")


def answers_from_cache(cached: StoredObject | None) -> TypeGuard[StoredObject]:
    """Whether a stored video (None: none there) carries everything a result needs, so it is a cache hit."""
    return cached is not None and all(name in cached.metadata for name in _META_FIELDS)


def stored_video(mp4: bytes, *, frames: int, height: int, width: int, fps: int) -> StoredObject:
    """The video object with the metadata a later cache hit answers from."""
    return StoredObject(
        size=len(mp4),
        metadata={
            "sha256": hashlib.sha256(mp4).hexdigest(),
            "width": str(width),
            "height": str(height),
            "num_frames": str(frames),
            "fps": str(fps),
        },
    )


async def video_info(store: ObjectStore, keys: ObjectKeys, stored: StoredObject, *, now: datetime) -> VideoInfo:
    """A result's video: the stored objects' URIs and URLs presigned now, with the video's metadata."""
    meta = stored.metadata
    frames, fps = int(meta["num_frames"]), int(meta["fps"])
    return VideoInfo(
        uri=store.uri(keys.video),
        url=await store.presign(keys.video),
        url_expires_at=now + timedelta(seconds=store.presign_ttl_s),
        poster_uri=store.uri(keys.poster),
        poster_url=await store.presign(keys.poster),
        bytes=stored.size,
        sha256=meta["sha256"],
        width=int(meta["width"]),
        height=int(meta["height"]),
        num_frames=frames,
        fps=fps,
        duration_s=round(frames / fps, 3),
    )
