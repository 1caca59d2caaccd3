"""Wires `/v1/webhooks` into the API: the endpoint directory, the follower that keeps it in step with the webhooks
topic (every replica sees every endpoint), the secret box and the URL rules, for the lifetime of the server. Tenant
webhooks are off (the routes answer 403 `webhooks_disabled`) while `VIDGEN_WEBHOOK_SECRETS_KEY` is unset."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from consumer.api.api_settings import ApiSettings
from consumer.api.routes.webhooks import WebhookRoutes
from consumer.http_server.health_routes import ReadinessCheck
from consumer.kafka.record_publisher import RecordPublisher
from consumer.settings import Settings
from consumer.webhooks.directory import EndpointDirectory
from consumer.webhooks.follower import DirectoryFollower
from consumer.webhooks.secret_box import SecretBox
from consumer.webhooks.url_rules import webhook_rules

__all__ = ["webhook_routes"]

log = logging.getLogger(__name__)

_RESOLVE_TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def webhook_routes(
    settings: Settings, api: ApiSettings, publisher: RecordPublisher, *, clock: Callable[[], datetime]
) -> AsyncIterator[tuple[WebhookRoutes, ReadinessCheck]]:
    """The routes and the readiness check of tenant webhooks; the directory is followed until the block ends."""
    directory = EndpointDirectory()
    key = settings.webhook_secrets_key
    follower = DirectoryFollower(settings, directory) if key is not None else None
    routes = WebhookRoutes(
        settings=settings,
        directory=directory,
        ready=lambda: follower is None or follower.caught_up,
        box=SecretBox(key) if key is not None else None,
        publisher=publisher,
        rules=webhook_rules(timeout_s=_RESOLVE_TIMEOUT_S, internal_hosts=settings.webhook_allow_hosts, subject="url"),
        clock=clock,
        entropy=secrets.token_bytes,
        publish_timeout_s=api.publish_timeout_s,
    )
    if follower is None:
        yield routes, _always_ready
        return
    await follower.start()
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    task.add_done_callback(_log_failure)

    async def check() -> str | None:
        if task.done():
            return "the webhook endpoints stopped following their topic"
        return None if follower.caught_up else "the webhook endpoints are catching up with their topic"

    try:
        yield routes, check
    finally:
        stop.set()
        await asyncio.wait([task])  # a failure was logged when it happened
        await follower.stop()


async def _always_ready() -> str | None:
    return None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("the webhook endpoints stopped following their topic: %r", error)
