"""Logging setup, called once by the entry point: JSON lines in production, readable text in a terminal."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from opentelemetry import trace

__all__ = ["configure_logging", "job_context"]

# The job a coroutine (or the render thread it started) works on; every log record inside carries it.
_JOB: ContextVar[dict[str, object] | None] = ContextVar("vidgen_job", default=None)
_CONTEXT_KEYS = ("request_id", "tenant_id", "topic", "partition", "offset", "trace_id", "span_id")


@contextlib.contextmanager
def job_context(**fields: object) -> Iterator[None]:
    token = _JOB.set({key: value for key, value in fields.items() if value is not None})
    try:
        yield
    finally:
        _JOB.reset(token)


class _JobFilter(logging.Filter):
    """Stamp records with the current job and trace; a filter on the handler, so library loggers get it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_JOB.get() or {}).items():
            setattr(record, key, value)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{key}={getattr(record, key)}" for key in _CONTEXT_KEYS if hasattr(record, key))
        return f"{line} [{ids}]" if ids else line


# Attributes every LogRecord has; anything else was passed through `extra=` and belongs in the JSON line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(*, fmt: str, level: str, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream)  # None: stderr
    handler.addFilter(_JobFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless the operator asks for DEBUG.
    chatty = ("aiokafka", "botocore", "aiobotocore", "urllib3", "diffusers", "transformers", "werkzeug", "cache_dit")
    for name in (*chatty, "CACHE_DIT"):
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
