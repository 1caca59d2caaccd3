"""The tenant endpoints in memory, as the compacted webhooks topic says they are: the latest record per endpoint id,
a tombstone removing it. Small by construction (at most `VIDGEN_WEBHOOK_MAX_ENDPOINTS` per tenant), so every API
replica and the notifier keep all of it. Lookups are per tenant: nothing answers one tenant with another's
endpoint."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from schemas.webhooks import WebhookEndpointRecord, WebhookEventType

__all__ = ["EndpointDirectory"]

log = logging.getLogger(__name__)


class EndpointDirectory:
    def __init__(self) -> None:
        self._endpoints: dict[str, WebhookEndpointRecord] = {}
        self._by_tenant: dict[str, dict[str, WebhookEndpointRecord]] = {}
        self.unreadable = 0  # records on the topic that are not endpoints: ignored, counted

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic: an endpoint (its id must be the key) or a tombstone."""
        endpoint_id = (key or b"").decode("utf-8", "replace")
        if value is None:
            self.remove(endpoint_id)
            return
        try:
            record = WebhookEndpointRecord.model_validate_json(value)
        except ValidationError:
            record = None
        if record is None or record.id != endpoint_id:
            self.unreadable += 1
            log.warning("a record on the webhooks topic is not an endpoint; ignored")
            return
        self.put(record)

    def put(self, record: WebhookEndpointRecord) -> None:
        """An endpoint as it now is (also what this process just wrote: visible to its own readers before the topic
        brings it back)."""
        self.remove(record.id)  # a record never changes tenant, but the index must not depend on that
        self._endpoints[record.id] = record
        self._by_tenant.setdefault(record.tenant_id, {})[record.id] = record

    def remove(self, endpoint_id: str) -> None:
        record = self._endpoints.pop(endpoint_id, None)
        if record is not None:
            mine = self._by_tenant[record.tenant_id]
            del mine[endpoint_id]
            if not mine:
                del self._by_tenant[record.tenant_id]

    def get(self, tenant_id: str, endpoint_id: str) -> WebhookEndpointRecord | None:
        """The tenant's endpoint; another tenant's id answers None, as an unknown one does."""
        record = self._endpoints.get(endpoint_id)
        return record if record is not None and record.tenant_id == tenant_id else None

    def of_tenant(self, tenant_id: str) -> list[WebhookEndpointRecord]:
        """The tenant's endpoints, oldest first."""
        mine = self._by_tenant.get(tenant_id, {}).values()
        return sorted(mine, key=lambda record: (record.created_at, record.id))

    def subscribed(self, tenant_id: str | None, event_type: WebhookEventType) -> list[WebhookEndpointRecord]:
        """The tenant's endpoints that asked for `event_type`."""
        if tenant_id is None:
            return []
        return [record for record in self.of_tenant(tenant_id) if event_type in record.events]

    def records(self) -> list[WebhookEndpointRecord]:
        """Every endpoint of every tenant (for the operator's tools, never for an API answer)."""
        return list(self._endpoints.values())

    def __len__(self) -> int:
        return len(self._endpoints)
