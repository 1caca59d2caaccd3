"""How much client text an event may carry. Pure.

Every record the worker writes is at most `VIDGEN_MAX_EVENT_BYTES`, counted as the producer counts it against its
`max_request_size` (which is set to the same number; `consumer/kafka/clients.py` measures records). Results are
small by construction: ids and metadata are bounded by the contract and error text is cut here (`shown`);
tests/test_event_bounds.py works out the worst case. Dead-letter copies, which carry the original record, stay within
the bound by becoming stubs (`consumer/core/dlq.py`).
"""

from __future__ import annotations

from consumer.core.sanitize import visible

__all__ = ["MAX_ERROR_FIELD_CHARS", "MAX_ERROR_MESSAGE_CHARS", "shown"]

MAX_ERROR_MESSAGE_CHARS = 1_000  # `error.message` of a result, `vidgen-error-message` of a dead letter
MAX_ERROR_FIELD_CHARS = 200  # `error.field` of a result


def shown(text: str, limit: int) -> str:
    """`text` as an event may carry it: at most `limit` characters, control and invisible characters written out
    (`visible`), and, when cut, ending in a marker that gives the original length."""
    safe = visible(text[:limit])
    if len(text) <= limit and len(safe) <= limit:
        return safe
    marker = f"... [cut: {len(text)} characters]"
    return safe[: limit - len(marker)] + marker
