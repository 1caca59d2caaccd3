"""Wire the API together from settings and own the lifetimes: S3, topics, the view's store and follower, the
producer, the JWKS client, the HTTP server behind the connection guard."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web
from opentelemetry.trace import NoOpTracer, Tracer

from consumer.api.api_metrics import ApiMetrics
from consumer.api.api_settings import ApiSettings
from consumer.api.auth.api_keys import ApiKeys
from consumer.api.auth.authenticator import Authenticator, JwksCache
from consumer.api.routes.application import GUARD, make_app
from consumer.api.routes.openapi import build_openapi
from consumer.api.routes.videos import Handlers
from consumer.api.view.database import JobStore
from consumer.api.view.follower import Listeners, ViewFollower, view_topics
from consumer.core.moderation import ContentPolicy
from consumer.core.rate_limit import TenantLimiter
from consumer.errors import VidgenError
from consumer.http_server.connection_guard import ConnectionGuard, GuardedSite
from consumer.kafka.clients import ensure_topics, start_producer, worker_topics
from consumer.kafka.record_publisher import RecordPublisher
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings

__all__ = ["serve"]

log = logging.getLogger(__name__)

_S3_CHECK_TIMEOUT_S = 3.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def serve(
    api: ApiSettings,
    settings: Settings,
    stop: asyncio.Event,
    *,
    tracer: Tracer | None = None,
    on_port: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> int:
    """Serve until `stop` is set. Returns the exit code: 0 after a clean stop, 1 when the view broke."""
    tracer = tracer or NoOpTracer()
    metrics = ApiMetrics()
    listeners = Listeners()
    store = JobStore(api.state_path)
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3_client(settings))
        objects = ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        if settings.s3_create_bucket:
            await objects.ensure_bucket()
        if settings.create_topics:
            await ensure_topics(settings, sorted({*worker_topics(settings), *view_topics(settings)}))
        await store.open()
        stack.push_async_callback(store.close)
        view = ViewFollower(settings, store, listeners, metrics, retention_s=api.retention_s, clock=clock)
        await view.start()
        stack.push_async_callback(view.stop)
        producer = await start_producer(settings)
        stack.push_async_callback(producer.stop)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        handlers = Handlers(
            api=api,
            settings=settings,
            store=store,
            objects=objects,
            listeners=listeners,
            metrics=metrics,
            policy=ContentPolicy.from_sources(terms=settings.banned_terms, path=settings.banned_terms_file),
            clock=clock,
            entropy=secrets.token_bytes,
            publisher=RecordPublisher(producer, tracer=tracer),
        )

        async def s3_check() -> str | None:
            try:
                await asyncio.wait_for(objects.ping(), _S3_CHECK_TIMEOUT_S)
            except (VidgenError, TimeoutError) as exc:
                return f"object storage unreachable: {exc}"
            return None

        async def view_check() -> str | None:
            return None if view.caught_up else "the view is catching up with the topics"

        app = make_app(
            handlers,
            authenticator=_authenticator(api, http),
            limiter=TenantLimiter(rate=api.rate_per_s, burst=api.burst, clock=asyncio.get_running_loop().time),
            guard=ConnectionGuard(api.http_limits()),
            tracer=tracer,
            checks={"kafka": view.check_broker, "s3": s3_check, "view": view_check},
            view_ready=lambda: view.caught_up,
            openapi=build_openapi(),
        )
        async with _listening(app, api, on_port):
            return await _follow_until_stop(view, stop)
    return 0  # pragma: no cover - the context above returns


def _authenticator(api: ApiSettings, http: aiohttp.ClientSession) -> Authenticator:
    jwks = None
    if api.jwt_jwks_url:
        jwks = JwksCache(api.jwt_jwks_url, http, min_refresh_s=api.jwks_min_refresh_s, timeout_s=api.jwks_timeout_s)
    keys = ApiKeys(Path(api.keys_file)) if api.keys_file else None
    return Authenticator(api, keys=keys, jwks=jwks)


@contextlib.asynccontextmanager
async def _listening(
    app: web.Application, api: ApiSettings, on_port: Callable[[int], None] | None
) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = GuardedSite(runner, api.host, api.port, guard=app[GUARD])
        await site.start()
        log.info("job API listening on %s", site.name)
        if on_port is not None:
            on_port(site.port)
        yield
    finally:
        await runner.cleanup()


async def _follow_until_stop(view: ViewFollower, stop: asyncio.Event) -> int:
    follower = asyncio.create_task(view.run(stop))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([follower, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if follower.done():
        error = follower.exception()
        if error is not None:
            log.error("the view stopped: %r", error)
            return 1
        return 0
    await follower  # stop is set: the follower ends after its current fetch
    return 0
