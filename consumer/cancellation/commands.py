"""Cancel commands from the control topic, indexed for the worker's lookups. Pure: records come in as bytes with
their broker timestamp (`consumer/kafka/state_topics.py` feeds them from the topic).

A command applies only to a request of its own tenant. The index keeps every (request id, tenant id) pair apart, so
a command naming the wrong tenant can never shadow or replace the right one's; lookups name both. A tombstone (a
null value) removes every command under its key. Commands older than the retention (measured from the record's
timestamp, as the topic's own `retention.ms` is) are forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ValidationError

from consumer.core.clock import WallClock
from consumer.errors import Cancelled
from schemas.events import VideoControl

__all__ = ["CancelCommand", "CancelIndex", "ControlUpdate", "IgnoredCommand", "cancelled_error"]

IgnoredReason = Literal["invalid", "key_mismatch", "wrong_tenant"]


@dataclass(frozen=True)
class CancelCommand:
    request_id: str
    tenant_id: str
    requested_at: datetime
    logged_at: datetime  # the record's timestamp: the retention counts from it


@dataclass(frozen=True)
class IgnoredCommand:
    """A command the worker does not act on, and why (`vidgen_control_ignored_total{reason}`)."""

    reason: IgnoredReason


ControlUpdate = CancelCommand | IgnoredCommand | None
"""What one record changed: a command new to the index, one ignored, or nothing new (a repeat, a tombstone, an
expired command)."""


class CancelIndex:
    """Cancel commands by (request id, tenant id), for the retention window."""

    def __init__(self, *, retention_s: float, clock: WallClock) -> None:
        self._retention = timedelta(seconds=retention_s)
        self._clock = clock
        self._by_id: dict[str, dict[str, CancelCommand]] = {}  # request id -> tenant id -> command

    def __len__(self) -> int:
        return sum(len(tenants) for tenants in self._by_id.values())

    def apply(self, key: bytes | None, value: bytes | None, *, logged_at: datetime) -> ControlUpdate:
        """One record of the control topic, in order."""
        request_id = _text(key)
        if value is None:  # a tombstone: the key's commands are withdrawn
            if request_id is not None:
                self._by_id.pop(request_id, None)
            return None
        try:
            control = VideoControl.model_validate_json(value)
        except ValidationError:
            return IgnoredCommand("invalid")
        if control.request_id != request_id:
            return IgnoredCommand("key_mismatch")  # compaction by key would mix it up with another request's commands
        if self._expired(logged_at):
            return None
        tenants = self._by_id.setdefault(control.request_id, {})
        known = control.tenant_id in tenants
        command = CancelCommand(control.request_id, control.tenant_id, control.requested_at, logged_at)
        tenants[control.tenant_id] = command
        return None if known else command

    def cancel_of(self, request_id: str, tenant_id: str) -> CancelCommand | None:
        """The live cancel command for this request of this tenant, if any."""
        command = self._by_id.get(request_id, {}).get(tenant_id)
        return None if command is None or self._expired(command.logged_at) else command

    def foreign(self, request_id: str, tenant_id: str) -> int:
        """Live commands for this request id that name another tenant: ignored, and counted by the caller."""
        tenants = self._by_id.get(request_id, {})
        return sum(
            1 for tenant, command in tenants.items() if tenant != tenant_id and not self._expired(command.logged_at)
        )

    def prune(self) -> int:
        """Forget commands past the retention; returns how many."""
        removed = 0
        for request_id in list(self._by_id):
            tenants = self._by_id[request_id]
            for tenant, command in list(tenants.items()):
                if self._expired(command.logged_at):
                    del tenants[tenant]
                    removed += 1
            if not tenants:
                del self._by_id[request_id]
        return removed

    def _expired(self, logged_at: datetime) -> bool:
        return logged_at < self._clock() - self._retention


def cancelled_error(command: CancelCommand) -> Cancelled:
    """The error a cancelled request is answered with (`failed`, `cancelled`, not retryable)."""
    return Cancelled(f"cancelled by its tenant (command issued at {command.requested_at.isoformat()})")


def _text(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None
