"""E-commerce "product created" webhook -> one video request per product version.

`python -m producer_examples.product_hook` serves `POST /webhooks/product-created` and `GET /healthz`.
Checks, in order: signature (401), payload and the worker's own request rules (422), tenant rate limit (429);
then publishes (202, or 503 when Kafka does not acknowledge in time, so the platform retries). When the GPU pool is
busy or down (`producer_examples.pool_watch`) a shop's request goes to the template pool instead, answered
`degraded` (its fallback, `template` by default), or, with the fallback `none`, gets 503 when busy; with the fallback
`similar` a product the shop already has a completed video of is answered with it at once
(`producer_examples.similar_answers`: its result published, `similar_to` the earlier request). A retried webhook
is answered as the first one was (`duplicate: true`, with its `degraded` and `similar_to`). Connections go through
`consumer.http_server.connection_guard`: header and body deadlines and a bound on open connections (408 / 503).
Every error is the job API's shape, `{"error": {"message", "type", "param", "code", "field"}}`, aiohttp's own (404,
405, 413) included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from aiohttp import web
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import Tracer
from pydantic import ValidationError

from consumer.api.routes.error_answers import error_middleware, error_response
from consumer.core.clock import utc_now
from consumer.core.degrade import DEGRADED_REASON_HEADER, FALLBACK_HEADER, choose_fallback, degrade
from consumer.core.moderation import ContentPolicy
from consumer.core.rate_limit import Clock, TenantLimiter
from consumer.errors import SignatureError, VidgenError
from consumer.http_server.connection_guard import ConnectionGuard
from consumer.http_server.guarded_site import GuardedSite
from consumer.http_server.health_routes import add_probe_routes
from consumer.http_server.request_metrics import HttpMetrics, measured
from consumer.http_server.server_spans import server_spans
from consumer.kafka.clients import ensure_topics, make_producer
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.telemetry.logs import configure_logging
from producer_examples.dedupe import RecentKeys
from producer_examples.hook_answers import accepted, invalid_payload, routed
from producer_examples.hook_metrics import HookMetrics
from producer_examples.hook_settings import HookSettings, pool_model
from producer_examples.pool_watch import PoolWatch, watching
from producer_examples.products import ProductCreated, build_request
from producer_examples.publishing import RequestPublisher
from producer_examples.signing import SIGNATURE_HEADER, verify
from producer_examples.similar_answers import SimilarAnswers, similar_answers
from producer_examples.tracer_setup import make_tracer_provider
from schemas.events import VideoRequest

__all__ = ["GUARD", "ROUTE", "main", "make_app", "pool_model", "serve"]

log = logging.getLogger(__name__)

ROUTE = "/webhooks/product-created"
GUARD = web.AppKey("connection_guard", ConnectionGuard)


class _Hook:
    def __init__(
        self, hook: HookSettings, settings: Settings, *, wall_clock: Clock, monotonic: Clock, metrics: HookMetrics
    ) -> None:
        self._hook = hook
        self._wall_clock = wall_clock
        self._secrets = [s.get_secret_value() for s in (hook.secret, hook.previous_secret) if s is not None]
        self._id_key = hook.id_key.get_secret_value().encode("utf-8")
        # The worker's banned terms, checked on the prompt as the worker checks it (the hook sends no negative_prompt).
        self._policy = ContentPolicy.from_sources(terms=settings.banned_terms, path=settings.banned_terms_file)
        self._max_record_bytes = settings.max_record_bytes
        self._limiter = TenantLimiter(rate=hook.rate_per_s, burst=hook.burst, clock=monotonic)
        self._recent = RecentKeys(hook.recent_capacity)
        self._template_topic = settings.template_topic
        self.pool_model = pool_model(hook, settings)
        self._metrics = metrics
        self.publisher: RequestPublisher | None = None
        self.similar: SimilarAnswers | None = None  # while started, where a shop's fallback is `similar`
        self.pool: PoolWatch | None = None

    async def product_created(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(
                request.headers.get(SIGNATURE_HEADER),
                body,
                self._secrets,
                now=self._wall_clock(),
                tolerance_s=self._hook.tolerance_s,
            )
        except SignatureError as exc:
            log.warning("webhook refused: %s", exc)
            message = f"{SIGNATURE_HEADER} refused: {exc.reason}"  # missing, malformed, stale, future or mismatch
            return error_response(401, "invalid_signature", message, field=SIGNATURE_HEADER)
        try:
            product = ProductCreated.model_validate_json(body)
        except ValidationError as exc:
            return invalid_payload(exc)
        try:
            video_request = build_request(
                product,
                template=self._hook.templates.get(product.shop_id, self._hook.default_template),
                render=self._hook.render_options(),
                priority=self._hook.priority,
                id_key=self._id_key,
                policy=self._policy,
                max_record_bytes=self._max_record_bytes,
                deadline=datetime.fromtimestamp(self._wall_clock() + self._hook.deadline_s, UTC),
                model=self.pool_model,
            )
        except VidgenError as exc:  # what the worker would reject the request with, told to the shop now
            log.info("webhook refused: %s on %s", exc.code, exc.field or "the request")
            return error_response(422, exc.code, exc.message, field=exc.field)
        if video_request.request_id in self._recent:
            note = self._recent.note(video_request.request_id)
            return web.json_response(accepted(video_request.request_id, duplicate=True, note=note), status=202)
        wait_s = self._limiter.try_take(product.shop_id)
        if wait_s > 0:
            retry_after = str(max(1, math.ceil(wait_s)))
            message = f"too many products from this shop: retry in {retry_after} s"
            return error_response(429, "rate_limited", message, headers={"Retry-After": retry_after})
        return await self._publish(video_request, shop_id=product.shop_id)

    async def _publish(self, video_request: VideoRequest, *, shop_id: str) -> web.Response:
        """To the GPU pool's topic, or, when the GPU pool is busy or down and the shop's fallback allows it, answered
        with the shop's earlier video of the product (fallback `similar`) or to the template pool's (degraded); 503
        when busy and it does not."""
        if self.publisher is None:
            message = "the hook is starting: retry in 5 s"
            return error_response(503, "starting", message, headers={"Retry-After": "5"})
        busy = self.pool is not None and self.pool.busy(self._hook.max_queued)
        fallback = choose_fallback(None, self._hook.shop_fallback.get(shop_id), self._hook.fallback)
        down = self.pool is not None and self.pool.down(self._hook.pool_down_s)
        reason = degrade(busy=busy, down=down, fallback=fallback)
        if reason is None and busy:
            message = "the GPU pool is busy and this shop has no fallback: retry in 30 s"
            return error_response(503, "busy", message, headers={"Retry-After": "30"})
        earlier = self.similar.find(video_request) if self.similar and reason and fallback == "similar" else None
        topic = None if reason is None else self._template_topic  # None: the request's lane on the GPU pool
        if topic is None and self.pool_model is not None:
            topic = self.pool_model.topic_for(video_request.priority)
        # The fallback that applied, as the job API sends it: the job object shows it on every replica's view.
        headers = [(FALLBACK_HEADER, fallback.encode())]
        if reason is not None:
            headers.append((DEGRADED_REASON_HEADER, reason.encode()))
        try:
            async with asyncio.timeout(self._hook.publish_timeout_s):
                if self.similar is not None and earlier is not None:  # answered at once: nothing to render
                    await self.similar.answer(video_request, earlier, headers=headers)
                else:
                    await self.publisher.publish(video_request, extra_headers=headers, topic=topic)
        except (KafkaError, TimeoutError) as exc:
            log.error("publishing %s failed: %r", video_request.request_id, exc)  # noqa: TRY400 - no traceback needed
            message = "the request could not be queued: retry in 10 s"
            return error_response(503, "unavailable", message, headers={"Retry-After": "10"})
        note = routed(reason, earlier.request_id if earlier is not None else None)
        self._recent.add(video_request.request_id, note)
        if reason is not None:
            trace.get_current_span().set_attribute("vidgen.degraded_reason", reason)
            self._metrics.degraded.labels(reason=reason).inc()
        if earlier is not None:
            trace.get_current_span().set_attribute("vidgen.similar_to", earlier.request_id)
            self._metrics.similar.inc()
        return web.json_response(accepted(video_request.request_id, duplicate=False, note=note), status=202)


def make_app(
    hook: HookSettings,
    settings: Settings,
    *,
    tracer: Tracer,
    wall_clock: Clock = time.time,
    monotonic: Clock = time.monotonic,
) -> web.Application:
    """The web application; its Kafka producer and its watch of the GPU pool start with the app and stop after the
    last request. Its `ConnectionGuard` (`app[GUARD]`) enforces the body deadline here; `serve` adds the rest of the
    limits."""
    metrics = HookMetrics()
    state = _Hook(hook, settings, wall_clock=wall_clock, monotonic=monotonic, metrics=metrics)
    metrics.watch(lambda: state.pool, lambda: len(state.similar or ()), pool_down_s=hook.pool_down_s)
    guard = ConnectionGuard(hook.http_limits())
    gpu_topics = [settings.requests_topic, settings.bulk_topic]
    watched = settings
    if state.pool_model is not None:  # another pool: its topics, read by its own consumer group
        gpu_topics = [state.pool_model.topic, state.pool_model.bulk_topic]
        group = next(pool.group for pool in settings.model_pools if pool.id == state.pool_model.id)
        watched = settings.model_copy(update={"consumer_group": group})

    async def kafka_producer(_: web.Application) -> AsyncIterator[None]:
        if settings.create_topics:
            await ensure_topics(settings, [*gpu_topics, settings.template_topic])
        producer = make_producer(settings)
        await producer.start()
        state.publisher = RequestPublisher(producer, settings=settings, tracer=tracer)
        try:
            async with (
                watching(watched, topics=gpu_topics, interval_s=hook.pool_check_s, clock=utc_now) as pool,
                similar_answers(hook, settings, producer, tracer=tracer) as similar,
            ):
                state.pool, state.similar = pool, similar
                yield
        finally:
            state.publisher = state.similar = state.pool = None
            await producer.stop()

    async def producer_ready() -> str | None:
        return None if state.publisher is not None else "the Kafka producer is not started"

    app = web.Application(
        client_max_size=hook.max_body_bytes,
        middlewares=[
            error_middleware,
            server_spans(tracer),
            measured(HttpMetrics("vidgen_hook", metrics.registry)),
            guard.middleware,
        ],
    )
    app[GUARD] = guard
    app.cleanup_ctx.append(kafka_producer)
    app.router.add_post(ROUTE, state.product_created)
    add_probe_routes(app, checks={"kafka": producer_ready}, registry=metrics.registry)
    return app


async def serve(
    hook: HookSettings,
    settings: Settings,
    stop: asyncio.Event,
    *,
    tracer: Tracer,
    on_port: Callable[[int], None] | None = None,
) -> None:
    """Serve behind the connection guard until `stop` is set, then drain in-flight requests (15 s at most)."""
    app = make_app(hook, settings, tracer=tracer)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=15)
    await runner.setup()
    try:
        site = GuardedSite(runner, hook.host, hook.port, guard=app[GUARD])
        await site.start()
        log.info("product hook listening on %s", site.name)
        if on_port is not None:
            on_port(site.port)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    del argv  # configured by environment variables only
    try:
        hook, settings = HookSettings(), Settings()  # the secrets come from the environment
    except ConfigurationError as exc:
        print(f"product_hook: invalid configuration:\n{describe_config_error(exc)}", file=sys.stderr)
        return 2
    try:
        pool_model(hook, settings)
    except ValueError as exc:
        print(f"product_hook: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    provider = make_tracer_provider("vidgen-product-hook", hook.otlp_endpoint)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(hook, settings, stop, tracer=provider.get_tracer(__name__))

    try:
        asyncio.run(run())
    except KafkaError as exc:
        log.critical("product hook stopped: %r", exc)
        return 1
    finally:
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
