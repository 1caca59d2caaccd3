"""Dead letters: the headers that say what went wrong and where a record came from, and the copy that stays within
the event bound. Pure: the size of a record is measured by the caller's `measure` (the producer's own count).

A copy carries the original key, value and headers plus the `vidgen-*` provenance headers when that fits in
`VIDGEN_MAX_EVENT_BYTES`. Otherwise (or when the broker refused the full copy) it carries a stub: the original's key
and headers only when each stays within its own small bound, and headers saying what was left out and how big the
original was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.core.cloud_events import CONTENT_TYPE_HEADER, JSON, without_envelope
from consumer.core.event_bounds import MAX_ERROR_MESSAGE_CHARS, shown
from consumer.core.job import Headers, Record

__all__ = [
    "MAX_KEPT_HEADERS_BYTES",
    "MAX_KEPT_KEY_BYTES",
    "OMITTED",
    "ORIGINAL_BYTES",
    "MeasureRecord",
    "Outgoing",
    "dead_letter_copy",
    "dead_letter_headers",
    "provenance_headers",
]

MAX_KEPT_KEY_BYTES = 1_024  # a dead-letter stub keeps the original key up to this size
MAX_KEPT_HEADERS_BYTES = 16_384  # and the original headers up to this size, all of them or none
OMITTED = "vidgen-omitted"  # header of a stub: what it left out, `value` then `key` and `headers` when they were
ORIGINAL_BYTES = "vidgen-original-bytes"  # header of a stub: bytes of the original's key, value and headers

MeasureRecord = Callable[[bytes | None, bytes | None, Sequence[tuple[str, bytes]]], int]
"""Bytes of a one-record batch of (key, value, headers), as the producer counts them."""


@dataclass(frozen=True)
class Outgoing:
    """A record to publish. `omitted` is empty for a full copy and names what a stub left out."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    omitted: tuple[str, ...] = ()


def provenance_headers(record: Record, *, code: str, message: str, worker_id: str) -> Headers:
    """What went wrong and where the record came from; the message cut and made visible like a result's."""
    return [
        ("vidgen-error-code", code.encode()),
        ("vidgen-error-message", shown(message, MAX_ERROR_MESSAGE_CHARS).encode("utf-8")),
        ("vidgen-original-topic", record.topic.encode("utf-8")),
        ("vidgen-original-partition", str(record.partition).encode()),
        ("vidgen-original-offset", str(record.offset).encode()),
        ("vidgen-worker-id", worker_id.encode("utf-8")),
    ]


def dead_letter_headers(record: Record, *, code: str, message: str, worker_id: str) -> Headers:
    """A DLQ record's headers: the original ones (less a CloudEvents envelope: the copy gets its own), then the
    error and the record's origin (docs/event-contract.md)."""
    provenance = provenance_headers(record, code=code, message=message, worker_id=worker_id)
    return [*without_envelope(record.headers), *provenance]


def dead_letter_copy(
    record: Record, provenance: Headers, *, max_bytes: int, measure: MeasureRecord, stub: bool = False
) -> Outgoing:
    """The original key, value and headers plus `provenance` (the `vidgen-*` headers and the copy's own CloudEvents
    envelope, which replaces the original's) when that fits in `max_bytes`; else, or when `stub` is asked for (the
    broker refused the full copy), a stub."""
    headers = without_envelope(record.headers)
    if not stub:
        whole = Outgoing(record.key, record.value, [*headers, *provenance])
        if measure(whole.key, whole.value, whole.headers) <= max_bytes:
            return whole
    keep_key = record.key is None or len(record.key) <= MAX_KEPT_KEY_BYTES
    keep_headers = _headers_bytes(headers) <= MAX_KEPT_HEADERS_BYTES
    omitted = ("value", *(() if keep_key else ("key",)), *(() if keep_headers else ("headers",)))
    size = len(record.key or b"") + len(record.value or b"") + _headers_bytes(record.headers or ())
    return Outgoing(
        key=record.key if keep_key else None,
        value=json.dumps({"omitted": list(omitted), "original_bytes": size}).encode(),
        headers=[
            *(headers if keep_headers else []),
            # The stub's value is JSON whatever the original was: its envelope says so.
            *((name, JSON.encode() if name == CONTENT_TYPE_HEADER else value) for name, value in provenance),
            (OMITTED, ",".join(omitted).encode()),
            (ORIGINAL_BYTES, str(size).encode()),
        ],
        omitted=omitted,
    )


def _headers_bytes(headers: Sequence[tuple[str, bytes | None]]) -> int:
    return sum(len(name.encode("utf-8")) + len(value or b"") for name, value in headers)
