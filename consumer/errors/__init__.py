"""Every error class of the project, under the one root `VidgenError`, in one place; import them from here.

The consumer loop decides reject / fail / retry from `code` and `retriable` alone. Modules by area: `root` (the
root), `results` (the codes a result event carries), `startup` (a process that cannot start, a command line the CLI
cannot run), `api` (the job API's HTTP answers), `webhooks` (the notifier's deliveries and webhook signatures),
`internal` (the worker's own, never an answer).
"""

from __future__ import annotations

from consumer.errors.api import ApiFailure, AuthFailure, BodyTimeout, ClaimError, QueryError
from consumer.errors.internal import IllegalTransition, RenderAbandoned
from consumer.errors.results import (
    Cancelled,
    ContentPolicyViolation,
    Expired,
    ImageError,
    ImageFetchError,
    ImageNotFound,
    ImageTooLarge,
    ImageUrlForbidden,
    InvalidRequest,
    ModelUnavailable,
    PublishRefused,
    RateLimited,
    RenderFailed,
    RenderTimeout,
    StorageError,
    TooLargeForWorker,
    UnsafeText,
    WorkerCrashed,
)
from consumer.errors.root import VidgenError
from consumer.errors.startup import InvalidNodeLayout, ModeUnsupported, ProducerUnsupported, UsageError
from consumer.errors.webhooks import (
    DeliveryRejected,
    DeliveryRetriable,
    EndpointUnavailable,
    SecretUnreadable,
    SignatureError,
    SignatureReason,
    WebhookUnresolved,
    WebhookUrlForbidden,
)

__all__ = [
    "ApiFailure",
    "AuthFailure",
    "BodyTimeout",
    "Cancelled",
    "ClaimError",
    "ContentPolicyViolation",
    "DeliveryRejected",
    "DeliveryRetriable",
    "EndpointUnavailable",
    "Expired",
    "IllegalTransition",
    "ImageError",
    "ImageFetchError",
    "ImageNotFound",
    "ImageTooLarge",
    "ImageUrlForbidden",
    "InvalidNodeLayout",
    "InvalidRequest",
    "ModeUnsupported",
    "ModelUnavailable",
    "ProducerUnsupported",
    "PublishRefused",
    "QueryError",
    "RateLimited",
    "RenderAbandoned",
    "RenderFailed",
    "RenderTimeout",
    "SecretUnreadable",
    "SignatureError",
    "SignatureReason",
    "StorageError",
    "TooLargeForWorker",
    "UnsafeText",
    "UsageError",
    "VidgenError",
    "WebhookUnresolved",
    "WebhookUrlForbidden",
    "WorkerCrashed",
]
