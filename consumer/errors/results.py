"""The errors a result event can carry: the request's own faults (`rejects`: status `rejected`) and failures of
processing it (status `failed`, `retriable` when trying again may help). Each code is a row of the event contract's
error table (docs/event-contract.md)."""

from __future__ import annotations

from consumer.errors.root import VidgenError

__all__ = [
    "Cancelled",
    "ContentPolicyViolation",
    "Expired",
    "ImageError",
    "ImageFetchError",
    "ImageNotFound",
    "ImageTooLarge",
    "ImageUrlForbidden",
    "InvalidRequest",
    "ModelUnavailable",
    "PublishRefused",
    "RateLimited",
    "RenderFailed",
    "RenderTimeout",
    "StorageError",
    "TooLargeForWorker",
    "UnsafeText",
    "WorkerCrashed",
]


class InvalidRequest(VidgenError):
    """The request breaks the contract (missing field, out of range...)."""

    code = "invalid_field"
    rejects = True


class UnsafeText(InvalidRequest):
    """A text field holds characters the sanitising rule rejects. An `InvalidRequest` with `field` set."""

    code = "invalid_field"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message, field=field)
        self.field: str = field


class ContentPolicyViolation(VidgenError):
    """The request asks for content the policy forbids. Rejected, not retriable: the same request fails again.
    `rule` is the index of the rule it broke, for operators; messages never name it."""

    code = "content_policy"
    rejects = True
    retriable = False

    def __init__(self, message: str, *, field: str, rule: int | None = None) -> None:
        super().__init__(message, field=field)
        self.field: str = field
        self.rule = rule


class RateLimited(VidgenError):
    """The tenant's request waited longer than its quota allows. Retriable: resubmitting later can succeed."""

    code = "rate_limited"
    retriable = True
    rejects = False


class ImageError(VidgenError):
    """The start image exists but is not a usable picture (not an image, too many pixels...)."""

    code = "invalid_image"
    rejects = True


class ImageUrlForbidden(VidgenError):
    """The start image URL breaks the fetch policy (scheme, host, address, bucket, redirects)."""

    code = "image_url_forbidden"
    rejects = True


class ImageTooLarge(VidgenError):
    """The start image is larger than the byte or pixel limit."""

    code = "image_too_large"
    rejects = True


class ImageNotFound(VidgenError):
    """The start image is not there (S3 NoSuchKey, HTTP 404/410)."""

    code = "image_not_found"
    rejects = True


class ImageFetchError(VidgenError):
    """The start image could not be downloaded; the source may come back."""

    code = "image_fetch_failed"
    retriable = True


class StorageError(VidgenError):
    """Object storage refused or timed out."""

    code = "storage_unavailable"
    retriable = True


class RenderFailed(VidgenError):
    """The pipeline raised while rendering this request."""

    code = "render_failed"
    retriable = True


class RenderTimeout(VidgenError):
    """The render ran past its deadline and was stopped between denoising steps."""

    code = "render_timeout"


class TooLargeForWorker(VidgenError):
    """The render cannot fit this worker's device memory even in its most frugal memory mode."""

    code = "too_large_for_worker"


class ModelUnavailable(VidgenError):
    """The model could not be loaded; the worker cannot render at all."""

    code = "model_unavailable"
    retriable = True


class PublishRefused(VidgenError):
    """The broker, or the producer's own size check, refused a record for good (too large, not authorised...):
    retrying cannot help. In a result it stands in for the result that was refused."""

    code = "publish_refused"


class Cancelled(VidgenError):
    """Its tenant cancelled the request (a command on the control topic) before it finished rendering."""

    code = "cancelled"


class Expired(VidgenError):
    """The request's own `deadline` passed before its render started."""

    code = "expired"


class WorkerCrashed(VidgenError):
    """Workers that started the request died without answering it, as many times as the crash guard allows."""

    code = "worker_crashed"
