"""Object storage through aioboto3: content-addressed uploads, cache lookups, presigned URLs, deletes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from consumer.errors import ImageTooLarge, StorageError
from consumer.settings import Settings

__all__ = ["ObjectStore", "StoredObject", "open_s3_client"]

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_NO_CREDENTIALS = (
    "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role "
    "(an instance profile, IRSA or another web identity)"
)


@contextlib.asynccontextmanager
async def open_s3_client(settings: Settings) -> AsyncIterator[Any]:
    """An S3 client for the configured endpoint. Credentials come from the standard AWS chain only; none there is a
    StorageError naming the variables, at once (else the first request would fail, deep in a job)."""
    session = aioboto3.Session()
    # boto3's signature says sync; aioboto3's session returns aiobotocore's coroutine (and caches what it found).
    if await session.get_credentials() is None:  # type: ignore[misc]
        raise StorageError(_NO_CREDENTIALS)
    config = AioConfig(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=5,
        read_timeout=30,
        signature_version="s3v4",
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    async with session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
        config=config,
    ) as client:
        yield client


@dataclass(frozen=True)
class StoredObject:
    size: int
    metadata: dict[str, str]


class ObjectStore:
    """The worker's bucket. Every S3 failure surfaces as StorageError (retriable) with what was attempted."""

    def __init__(self, client: Any, *, bucket: str, presign_ttl_s: int) -> None:
        self._client = client
        self.bucket = bucket
        self.presign_ttl_s = presign_ttl_s

    async def ensure_bucket(self) -> None:
        with _storage_errors(f"create bucket {self.bucket}"):
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in _NOT_FOUND:
                    raise
                await self._client.create_bucket(Bucket=self.bucket)

    async def ping(self) -> None:
        with _storage_errors(f"reach bucket {self.bucket}"):
            await self._client.head_bucket(Bucket=self.bucket)

    async def head(self, key: str) -> StoredObject | None:
        with _storage_errors(f"look up s3://{self.bucket}/{key}"):
            try:
                response = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _NOT_FOUND:
                    return None
                raise
        return StoredObject(size=int(response["ContentLength"]), metadata=dict(response.get("Metadata", {})))

    async def put(self, key: str, body: bytes | BinaryIO, *, content_type: str, metadata: dict[str, str]) -> None:
        """Store `body`: bytes, or a file read from its current position (streamed, never loaded whole)."""
        with _storage_errors(f"upload s3://{self.bucket}/{key}"):
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, Metadata=metadata
            )

    async def get(self, bucket: str, key: str, *, max_bytes: int) -> bytes | None:
        """Download a start image (None: no such object), refusing objects over the byte limit before reading
        them. Messages name the bucket, never the key (it comes from a request)."""
        with _storage_errors(f"download a start image from bucket {bucket}"):
            try:
                response = await self._client.get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) in _NOT_FOUND:
                    return None
                raise
            size = int(response["ContentLength"])
            if size > max_bytes:
                response["Body"].close()
                raise ImageTooLarge(f"image_url names an object of {size} bytes; the limit is {max_bytes}")
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def delete(self, key: str) -> None:
        """Delete `key` (nothing happens when it is not there)."""
        with _storage_errors(f"delete s3://{self.bucket}/{key}"):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def presign(self, key: str) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.presign_ttl_s
        )
        return url

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str) -> str | None:
        """The key of `s3://<bucket>/<key>` when it is in this bucket, else None."""
        prefix = f"s3://{self.bucket}/"
        return uri.removeprefix(prefix) if uri.startswith(prefix) else None


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _storage_errors(action: str) -> Any:
    try:
        yield
    except ClientError as exc:
        raise StorageError(f"could not {action}: {_error_code(exc)} {exc}") from exc
    except (BotoCoreError, OSError, TimeoutError) as exc:
        raise StorageError(f"could not {action}: {exc!r}") from exc
