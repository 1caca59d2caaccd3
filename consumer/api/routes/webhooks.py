"""`/v1/webhooks`: a tenant's own webhook endpoints. Create (the signing secret shown once), list, show, delete and
rotate the secret. Each change is a record on the compacted webhooks topic (key: endpoint id; the secret encrypted
under the operator's key), which every API replica and the notifier follow; the replica that wrote it applies it at
once. Another tenant's endpoint and an unknown id get the same 404.

A URL passes the notifier's own SSRF rules before it is accepted (`consumer.webhooks.url_rules`), so a tenant
learns at once that an endpoint can never be delivered to, instead of from a dead letter.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from consumer.api.routes.videos import CALLER
from consumer.core.sanitize import name_safely
from consumer.errors import ApiFailure, SecretUnreadable, WebhookUnresolved, WebhookUrlForbidden
from consumer.images.url_vetting import UrlRules, vet_url
from consumer.kafka.record_publisher import RecordPublisher
from consumer.settings import Settings
from consumer.webhooks.directory import EndpointDirectory
from consumer.webhooks.secret_box import SecretBox, new_secret
from schemas.webhooks import (
    StoredSecret,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointDeleted,
    WebhookEndpointList,
    WebhookEndpointRecord,
    WebhookSecretRotated,
)

__all__ = ["WebhookRoutes"]

log = logging.getLogger(__name__)

_KEPT_SECRETS = 3  # the new one, the one it replaces, and one older still in its overlap


@dataclass
class WebhookRoutes:
    settings: Settings
    directory: EndpointDirectory
    ready: Callable[[], bool]
    box: SecretBox | None
    publisher: RecordPublisher
    rules: UrlRules
    clock: Callable[[], datetime]
    entropy: Callable[[int], bytes]
    publish_timeout_s: float

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/webhooks", self.create)
        app.router.add_get("/v1/webhooks", self.list_endpoints, allow_head=False)
        app.router.add_get("/v1/webhooks/{id}", self.show, allow_head=False)
        app.router.add_delete("/v1/webhooks/{id}", self.delete)
        app.router.add_post("/v1/webhooks/{id}/rotate", self.rotate)

    async def create(self, request: web.Request) -> web.Response:
        box = self._enabled()
        tenant = request[CALLER].tenant_id
        body = _parse(await request.read(), request.content_type)
        if len(self.directory.of_tenant(tenant)) >= self.settings.webhook_max_endpoints:
            raise ApiFailure(
                409,
                "webhook_limit_reached",
                f"a tenant may have {self.settings.webhook_max_endpoints} webhook endpoints; delete one first",
            )
        await self._vet(body.url)
        secret = new_secret(self.entropy(32))
        record = WebhookEndpointRecord(
            id="wh_" + self.entropy(16).hex(),
            tenant_id=tenant,
            url=body.url,
            events=body.events,
            created_at=self.clock(),
            secrets=[StoredSecret(ciphertext=box.seal(secret))],
        )
        await self._write(record)
        answer = WebhookEndpointCreated(**_shown(record, self.clock()).model_dump(), secret=secret)
        return _json(answer, status=201, headers={"Location": f"/v1/webhooks/{record.id}"})

    async def list_endpoints(self, request: web.Request) -> web.Response:
        self._enabled()
        now = self.clock()
        mine = self.directory.of_tenant(request[CALLER].tenant_id)
        return _json(WebhookEndpointList(data=[_shown(record, now) for record in mine]))

    async def show(self, request: web.Request) -> web.Response:
        self._enabled()
        return _json(_shown(self._require(request), self.clock()))

    async def delete(self, request: web.Request) -> web.Response:
        self._enabled()
        record = self._require(request)
        await self._send(record.id, None)
        self.directory.remove(record.id)
        return _json(WebhookEndpointDeleted(id=record.id))

    async def rotate(self, request: web.Request) -> web.Response:
        """A new current secret; the one it replaces keeps signing for the overlap
        (`VIDGEN_WEBHOOK_ROTATION_OVERLAP_S`), older ones until their own overlap ends. Stored secrets are
        re-encrypted under the newest operator key."""
        box = self._enabled()
        record = self._require(request)
        now = self.clock()
        expires_at = now + timedelta(seconds=self.settings.webhook_rotation_overlap_s)
        kept = []
        for old in record.secrets_at(now):
            ends = old.expires_at or expires_at
            if ends <= now:
                continue  # an overlap of 0 drops the old secret at once
            try:
                kept.append(StoredSecret(ciphertext=box.reseal(old.ciphertext), expires_at=ends))
            except SecretUnreadable:  # no configured key opens it: it could not sign anyway
                log.warning("endpoint %s: a previous secret does not decrypt; dropped by the rotation", record.id)
        secret = new_secret(self.entropy(32))
        fresh = [StoredSecret(ciphertext=box.seal(secret)), *kept][:_KEPT_SECRETS]
        rotated = record.model_copy(update={"secrets": fresh})
        await self._write(rotated)
        return _json(WebhookSecretRotated(**_shown(rotated, now).model_dump(), secret=secret))

    def _enabled(self) -> SecretBox:
        if self.box is None:
            raise ApiFailure(403, "webhooks_disabled", "webhook endpoints are not enabled on this service")
        if not self.ready():
            raise ApiFailure(503, "starting", "the API is catching up with the topics", headers={"Retry-After": "1"})
        return self.box

    def _require(self, request: web.Request) -> WebhookEndpointRecord:
        record = self.directory.get(request[CALLER].tenant_id, request.match_info["id"])
        if record is None:
            raise ApiFailure(404, "not_found", "no such webhook endpoint")
        return record

    async def _vet(self, url: str) -> None:
        try:
            await vet_url(url, self.rules)
        except WebhookUrlForbidden as exc:
            raise ApiFailure(422, "webhook_url_forbidden", exc.message, field="url") from exc
        except WebhookUnresolved as exc:
            raise ApiFailure(422, "webhook_url_unresolved", exc.message, field="url") from exc

    async def _write(self, record: WebhookEndpointRecord) -> None:
        await self._send(record.id, record)
        self.directory.put(record)

    async def _send(self, key: str, record: WebhookEndpointRecord | None) -> None:
        topic = self.settings.webhooks_topic
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                if record is None:
                    await self.publisher.tombstone(topic, key)
                else:
                    await self.publisher.publish(topic, key, record)
        except (KafkaError, TimeoutError) as exc:
            log.warning("publishing to %s failed: %r", topic, exc)
            raise ApiFailure(
                503, "unavailable", "Kafka did not acknowledge in time; try again", headers={"Retry-After": "5"}
            ) from exc


def _parse(body: bytes, content_type: str) -> WebhookEndpointCreate:
    if content_type != "application/json":
        raise ApiFailure(415, "unsupported_media_type", "send application/json")
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ApiFailure(400, "invalid_json", "the body is not valid UTF-8 JSON") from exc
    if not isinstance(data, dict):
        raise ApiFailure(422, "invalid_body", "the body must be a JSON object")
    try:
        return WebhookEndpointCreate.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, data) from exc


def _invalid(exc: ValidationError, data: dict[str, Any]) -> ApiFailure:
    """The first error, named without echoing what the client sent: an unknown field by position unless plain."""
    first = exc.errors(include_url=False, include_input=False)[0]
    name = str(first["loc"][0]) if first["loc"] else "(body)"
    if first["type"] == "extra_forbidden":
        position = next((index for index, key in enumerate(data, start=1) if key == name), None)
        field = name_safely(name, kind="unknown field", position=position)
        return ApiFailure(422, "unknown_field", "this field is not part of a webhook endpoint", field=field)
    code = "missing_field" if first["type"] == "missing" else "invalid_field"
    return ApiFailure(422, code, f"{name}: {first['msg']}", field=name)


def _shown(record: WebhookEndpointRecord, now: datetime) -> WebhookEndpoint:
    overlaps = [secret.expires_at for secret in record.secrets_at(now) if secret.expires_at is not None]
    return WebhookEndpoint(
        id=record.id,
        url=record.url,
        events=record.events,
        created_at=int(record.created_at.timestamp()),
        previous_secret_expires_at=int(max(overlaps).timestamp()) if overlaps else None,
    )


def _json(body: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(text=body.model_dump_json(exclude_none=True), status=status, headers=headers)
