"""Wire the API together from settings and own the lifetimes: S3, topics, the view's store and follower, the
producer, the JWKS client, and two HTTP servers, each behind a connection guard of its own: the API on
`VIDGEN_API_PORT` and the probes and metrics on `VIDGEN_API_OPERATOR_PORT`."""

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
from consumer.api.routes.application import GUARD, LINGER_S, make_app, make_operator_app
from consumer.api.routes.openapi import build_openapi
from consumer.api.routes.videos import Handlers
from consumer.api.submission.body_budget import BodyBudget
from consumer.api.video_deletion import VideoDeletion
from consumer.api.view.follower import ViewFollower, view_topics
from consumer.api.view.job_store import JobStore
from consumer.api.view.listeners import Listeners
from consumer.api.webhook_endpoints import webhook_routes
from consumer.core.moderation import ContentPolicy
from consumer.core.rate_limit import TenantLimiter
from consumer.errors import VidgenError
from consumer.http_server.connection_guard import ConnectionGuard, HttpLimits
from consumer.http_server.guarded_site import GuardedSite
from consumer.kafka.clients import ensure_topics, start_producer, worker_topics
from consumer.kafka.record_publisher import RecordPublisher
from consumer.object_store import ObjectStore, open_s3_client
from consumer.settings import Settings

__all__ = ["serve"]

log = logging.getLogger(__name__)

_S3_CHECK_TIMEOUT_S = 3.0
# Probes and scrapes: a handful of quick callers inside the cluster.
_OPERATOR_LIMITS = HttpLimits(header_timeout_s=5.0, body_timeout_s=5.0, max_connections=64)


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def serve(
    api: ApiSettings,
    settings: Settings,
    stop: asyncio.Event,
    *,
    tracer: Tracer | None = None,
    on_port: Callable[[int], None] | None = None,
    on_operator_port: Callable[[int], None] | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> int:
    """Serve until `stop` is set. Returns the exit code: 0 after a clean stop, 1 when the view broke. `on_port` and
    `on_operator_port` are told the ports listened on (the ones the OS picked for port 0)."""
    tracer = tracer or NoOpTracer()
    metrics = ApiMetrics()
    listeners = Listeners()
    store = JobStore(api.state_path, tenant_max_jobs=api.tenant_max_jobs)
    models = api.models(settings)
    async with contextlib.AsyncExitStack() as stack:
        s3 = await stack.enter_async_context(open_s3_client(settings))
        objects = ObjectStore(s3, bucket=settings.s3_bucket, presign_ttl_s=settings.presign_ttl_s)
        if settings.s3_create_bucket:
            await objects.ensure_bucket()
        if settings.create_topics:
            topics = {*worker_topics(settings), *view_topics(settings), settings.webhooks_topic}
            topics |= {topic for model in models for topic in (model.topic, model.bulk_topic)}  # the other pools'
            await ensure_topics(settings, sorted(topics))
        await store.open()
        stack.push_async_callback(store.close)
        deletion = VideoDeletion(store, objects)
        view = ViewFollower(
            settings,
            store,
            listeners,
            metrics,
            models=models,
            retention_s=api.retention_s,
            clock=clock,
            on_changed=deletion.reclaim,
        )
        await view.start()
        stack.push_async_callback(view.stop)
        producer = await start_producer(settings)
        stack.push_async_callback(producer.stop)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        publisher = RecordPublisher(producer, tracer=tracer, source=settings.event_source, clock=clock)
        webhooks, webhooks_check = await stack.enter_async_context(
            webhook_routes(settings, api, publisher, clock=clock)
        )
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
            bodies=BodyBudget(api.body_budget_bytes),
            models=models,
            deletion=deletion,
            publisher=publisher,
        )

        async def s3_check() -> str | None:
            try:
                await asyncio.wait_for(objects.ping(), _S3_CHECK_TIMEOUT_S)
            except (VidgenError, TimeoutError) as exc:
                return f"object storage unreachable: {exc}"
            return None

        async def view_check() -> str | None:
            return None if view.caught_up else "the view is catching up with the topics"

        guard = ConnectionGuard(api.http_limits())
        metrics.watch_edge(guard, handlers.bodies)
        app = make_app(
            handlers,
            authenticator=_authenticator(api, http),
            limiter=TenantLimiter(rate=api.rate_per_s, burst=api.burst, clock=asyncio.get_running_loop().time),
            guard=guard,
            tracer=tracer,
            view_ready=lambda: view.caught_up,
            openapi=build_openapi(),
            webhooks=webhooks,
        )
        operator = make_operator_app(
            guard=ConnectionGuard(_OPERATOR_LIMITS),
            checks={"kafka": view.check_broker, "s3": s3_check, "view": view_check, "webhooks": webhooks_check},
            registry=metrics.registry,
            cache_s=api.readiness_cache_s,
        )
        async with (
            _listening(operator, api.host, api.operator_port, "operator port", on_operator_port),
            _listening(app, api.host, api.port, "job API", on_port),
        ):
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
    app: web.Application, host: str, port: int, what: str, on_port: Callable[[int], None] | None
) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5, lingering_time=LINGER_S)
    await runner.setup()
    try:
        site = GuardedSite(runner, host, port, guard=app[GUARD])
        await site.start()
        log.info("%s listening on %s", what, site.name)
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
