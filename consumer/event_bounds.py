"""How big what the worker publishes can get, and the dead-letter copy that stays within it. Pure.

Every record the worker writes is at most `VIDGEN_MAX_EVENT_BYTES`, counted as the producer counts it against its
`max_request_size` (which is set to the same number). Results are small by construction: ids and metadata are
bounded by the contract, error text is cut here (`shown`), and tests/test_event_bounds.py works out the worst case.
A dead-letter copy carries the original record, which can be as large as the broker took it, so when the copy would
not fit (or the broker refused it) it carries a stub instead: the original's key and headers only when each stays
within its own small bound, and headers saying what was left out and how big the original was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import ConsumerRecord
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from consumer.sanitize import visible
from consumer.telemetry.tracing import Headers

__all__ = [
    "MAX_ERROR_FIELD_CHARS",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_KEPT_HEADERS_BYTES",
    "MAX_KEPT_KEY_BYTES",
    "OMITTED",
    "ORIGINAL_BYTES",
    "Outgoing",
    "dead_letter_copy",
    "record_bytes",
    "shown",
]

MAX_ERROR_MESSAGE_CHARS = 1_000  # `error.message` of a result, `vidgen-error-message` of a dead letter
MAX_ERROR_FIELD_CHARS = 200  # `error.field` of a result
MAX_KEPT_KEY_BYTES = 1_024  # a dead-letter stub keeps the original key up to this size
MAX_KEPT_HEADERS_BYTES = 16_384  # and the original headers up to this size, all of them or none
OMITTED = "vidgen-omitted"  # header of a stub: what it left out, `value` then `key` and `headers` when they were
ORIGINAL_BYTES = "vidgen-original-bytes"  # header of a stub: bytes of the original's key, value and headers


def shown(text: str, limit: int) -> str:
    """`text` as an event may carry it: at most `limit` characters, control and invisible characters written out
    (`visible`), and, when cut, ending in a marker that gives the original length."""
    safe = visible(text[:limit])
    if len(text) <= limit and len(safe) <= limit:
        return safe
    marker = f"... [cut: {len(text)} characters]"
    return safe[: limit - len(marker)] + marker


def record_bytes(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """Size of a one-record batch exactly as the producer checks it against `max_request_size`."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


@dataclass(frozen=True)
class Outgoing:
    """A record to publish. `omitted` is empty for a full copy and names what a stub left out."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    omitted: tuple[str, ...] = ()


def dead_letter_copy(
    record: ConsumerRecord[bytes, bytes], provenance: Headers, *, max_bytes: int, stub: bool = False
) -> Outgoing:
    """The original key, value and headers plus `provenance` (the `vidgen-*` headers) when that fits in
    `max_bytes`; else, or when `stub` is asked for (the broker refused the full copy), a stub."""
    headers = list(record.headers or ())
    if not stub:
        whole = Outgoing(record.key, record.value, [*headers, *provenance])
        if record_bytes(whole.key, whole.value, whole.headers) <= max_bytes:
            return whole
    keep_key = record.key is None or len(record.key) <= MAX_KEPT_KEY_BYTES
    keep_headers = _headers_bytes(headers) <= MAX_KEPT_HEADERS_BYTES
    omitted = ("value", *(() if keep_key else ("key",)), *(() if keep_headers else ("headers",)))
    size = len(record.key or b"") + len(record.value or b"") + _headers_bytes(headers)
    return Outgoing(
        key=record.key if keep_key else None,
        value=json.dumps({"omitted": list(omitted), "original_bytes": size}).encode(),
        headers=[
            *(headers if keep_headers else []),
            *provenance,
            (OMITTED, ",".join(omitted).encode()),
            (ORIGINAL_BYTES, str(size).encode()),
        ],
        omitted=omitted,
    )


def _headers_bytes(headers: Sequence[tuple[str, bytes | None]]) -> int:
    return sum(len(name.encode("utf-8")) + len(value or b"") for name, value in headers)
