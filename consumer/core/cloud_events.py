"""CloudEvents binary-mode Kafka headers of the records vidgen writes. Pure: the time comes in as an argument.

Every result, progress event and dead letter carries `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`,
`ce_subject` (the request id, when there is one) and `content-type`, so any CloudEvents SDK's Kafka binding reads
the record as an event whose data is the unchanged JSON value. The attributes are checked and encoded by the
CloudEvents SDK itself (`cloudevents.core`), so what the worker writes is what the SDK reads.

`ce_id` is derived from what the record says, never drawn at random: a duplicate (a request answered twice after a
redelivery, a dead letter written again after a crash) has the id of the first, and `ce_source` names the
deployment (`VIDGEN_EVENT_SOURCE`), not one worker, so the (source, id) pair CloudEvents consumers de-duplicate on
is the same for both copies.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal

from cloudevents.core.bindings.kafka import to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from schemas.events import VideoProgress

__all__ = [
    "CE_PREFIX",
    "CONTENT_TYPE_HEADER",
    "DEAD_LETTER_TYPE",
    "EVENT_TYPES",
    "JSON",
    "NOTIFICATION_DEAD_LETTER_TYPE",
    "command_event",
    "dead_letter_event",
    "envelope",
    "event_id",
    "is_envelope_header",
    "progress_event",
    "result_event",
    "without_envelope",
]

CE_PREFIX: Final = "ce_"
CONTENT_TYPE_HEADER: Final = "content-type"
JSON: Final = "application/json"
OCTETS: Final = "application/octet-stream"
_NAMESPACE: Final = "io.vidgen"

DEAD_LETTER_TYPE: Final = f"{_NAMESPACE}.request.deadlettered"
NOTIFICATION_DEAD_LETTER_TYPE: Final = f"{_NAMESPACE}.notification.deadlettered"
EVENT_TYPES: Final = {
    "completed": f"{_NAMESPACE}.video.completed",
    "failed": f"{_NAMESPACE}.video.failed",
    "rejected": f"{_NAMESPACE}.video.rejected",
    "started": f"{_NAMESPACE}.video.started",
    "progress": f"{_NAMESPACE}.video.progress",
    "requested": f"{_NAMESPACE}.video.requested",
    "cancel_requested": f"{_NAMESPACE}.video.cancel_requested",
    "delete_requested": f"{_NAMESPACE}.video.delete_requested",
}
"""`ce_type` of a result by its status, of a progress event by its kind, and of the job API's requests, cancel and
delete commands (which the worker never requires)."""

Header = tuple[str, bytes]


def event_id(*parts: object) -> str:
    """32 hex digits (128 bits) hashed from `parts` JSON-encoded as a list, so no choice of ids can make two
    different lists collide; the same parts always give the same id."""
    encoded = json.dumps([str(part) if part is not None else None for part in parts], separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:32]


def envelope(
    *, event_type: str, source: str, id_: str, time: datetime, subject: str | None, content_type: str = JSON
) -> list[Header]:
    """The binary-mode headers of one event, built and encoded by the CloudEvents SDK."""
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": id_,
        "source": source,
        "type": event_type,
        "time": time if time.tzinfo is not None else time.replace(tzinfo=UTC),  # naive: UTC, as the contract's
        "datacontenttype": content_type,
    }
    if subject:
        attributes["subject"] = subject
    message = to_binary(CloudEvent(attributes), JSONFormat())
    return sorted(message.headers.items())


def result_event(*, status: str, tenant_id: str | None, request_id: str, source: str, time: datetime) -> list[Header]:
    """Headers of a result: one id per (tenant, request, status), as the notifier's delivery key."""
    return _about_job(EVENT_TYPES[status], tenant_id=tenant_id, request_id=request_id, source=source, time=time)


def command_event(
    *,
    kind: Literal["requested", "cancel_requested", "delete_requested"],
    tenant_id: str,
    request_id: str,
    source: str,
    time: datetime,
) -> list[Header]:
    """Headers of a request, a cancel or a delete command the job API publishes: one id per (tenant, request, kind),
    so a job cancelled and then deleted publishes two events, not one id for two different records."""
    return _about_job(EVENT_TYPES[kind], tenant_id=tenant_id, request_id=request_id, source=source, time=time)


def _about_job(event_type: str, *, tenant_id: str | None, request_id: str, source: str, time: datetime) -> list[Header]:
    return envelope(
        event_type=event_type,
        source=source,
        id_=event_id(event_type, tenant_id, request_id),
        time=time,
        subject=request_id,
    )


def progress_event(progress: VideoProgress, *, source: str) -> list[Header]:
    """Headers of a progress event: one id per (request, attempt, kind, step)."""
    event_type = EVENT_TYPES[progress.event]
    return envelope(
        event_type=event_type,
        source=source,
        id_=event_id(event_type, progress.request_id, progress.attempt, progress.step),
        time=progress.at,
        subject=progress.request_id,
    )


def dead_letter_event(
    *,
    topic: str,
    partition: int,
    offset: int,
    code: str,
    value: bytes | None,
    request_id: str | None,
    source: str,
    time: datetime,
    event_type: str = DEAD_LETTER_TYPE,
) -> list[Header]:
    """Headers of a dead letter: one id per (original position, code). Its data is the original value, which is
    declared JSON only when it parses as JSON (a record dead-lettered as `not_json` is not)."""
    return envelope(
        event_type=event_type,
        source=source,
        id_=event_id(event_type, topic, partition, offset, code),
        time=time,
        subject=request_id,
        content_type=JSON if _is_json(value) else OCTETS,
    )


def is_envelope_header(name: str) -> bool:
    """A header the CloudEvents binding reads: a `ce_` attribute or the content type."""
    lowered = name.lower()
    return lowered.startswith(CE_PREFIX) or lowered == CONTENT_TYPE_HEADER


def without_envelope(headers: Iterable[Header] | None) -> list[Header]:
    """`headers` less any CloudEvents envelope: a copy of another record gets an envelope of its own, not two."""
    return [(name, value) for name, value in headers or () if not is_envelope_header(name)]


def _is_json(value: bytes | None) -> bool:
    if not value:
        return False
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        return False
    return True
