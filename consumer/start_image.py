"""Where start images come from: allowlisted S3 buckets, or HTTPS through the SSRF-safe fetcher."""

from __future__ import annotations

from urllib.parse import urlsplit

from consumer.errors import ImageUrlForbidden
from consumer.fetching import FetchPolicy, fetch_https
from consumer.storage import ObjectStore

__all__ = ["StartImageSource"]


class StartImageSource:
    def __init__(
        self, *, store: ObjectStore, allowed_buckets: frozenset[str], policy: FetchPolicy, max_bytes: int
    ) -> None:
        self._store = store
        self._allowed_buckets = allowed_buckets
        self._policy = policy
        self._max_bytes = max_bytes

    async def fetch(self, url: str) -> bytes:
        if url.startswith("s3://"):
            parts = urlsplit(url)
            bucket, key = parts.netloc, parts.path.lstrip("/")
            if bucket not in self._allowed_buckets:
                raise ImageUrlForbidden(
                    f"image_url bucket {bucket!r} is not allowed; allowed: {', '.join(sorted(self._allowed_buckets))}"
                )
            return await self._store.get(bucket, key, max_bytes=self._max_bytes)
        return await fetch_https(url, self._policy)
