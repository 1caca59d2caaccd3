"""Where start images come from: the tenant's own upload folder in the output bucket, shared image buckets, or
HTTPS through the SSRF-safe fetcher."""

from __future__ import annotations

from dataclasses import dataclass

from consumer.core.keys import is_plain_key, tenant_may_read
from consumer.errors import ImageNotFound, ImageUrlForbidden
from consumer.images.https_download import FetchPolicy, fetch_https
from consumer.object_store import ObjectStore

__all__ = ["S3Sources", "StartImageSource"]


@dataclass(frozen=True)
class S3Sources:
    """Which S3 objects a request may read: from the output bucket only its tenant's upload folder (under
    `key_prefix`), from the shared image buckets any plain key. The output bucket is never shared, even if listed."""

    output_bucket: str
    key_prefix: str
    shared_buckets: frozenset[str]

    def locate(self, url: str, *, tenant_id: str) -> tuple[str, str]:
        """The (bucket, key) an `s3://` URL names, if this tenant may read it. A key it may not read raises the
        very error a missing object does, so nobody learns what exists outside their own folder."""
        bucket, _, key = url.removeprefix("s3://").partition("/")
        if bucket == self.output_bucket:
            readable = tenant_may_read(key, prefix=self.key_prefix, tenant_id=tenant_id)
        elif bucket in self.shared_buckets:
            readable = is_plain_key(key)
        else:
            allowed = ", ".join(sorted({self.output_bucket, *self.shared_buckets}))
            raise ImageUrlForbidden(f"image_url names a bucket start images may not come from; allowed: {allowed}")
        if not readable:
            raise _not_found(bucket)
        return bucket, key


def _not_found(bucket: str) -> ImageNotFound:
    """The one answer for a key that is missing or not this tenant's to read: the same code and message, no key."""
    return ImageNotFound(f"image_url names no object in bucket {bucket} that this request may read")


class StartImageSource:
    def __init__(self, *, store: ObjectStore, sources: S3Sources, policy: FetchPolicy, max_bytes: int) -> None:
        self._store = store
        self._sources = sources
        self._policy = policy
        self._max_bytes = max_bytes

    async def fetch(self, url: str, *, tenant_id: str) -> bytes:
        if not url.startswith("s3://"):
            return await fetch_https(url, self._policy)
        bucket, key = self._sources.locate(url, tenant_id=tenant_id)  # before any S3 call
        data = await self._store.get(bucket, key, max_bytes=self._max_bytes)
        if data is None:
            raise _not_found(bucket)
        return data
