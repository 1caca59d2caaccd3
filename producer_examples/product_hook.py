"""E-commerce "product created" webhook -> one video request per product version.

`python -m producer_examples.product_hook` serves `POST /webhooks/product-created` and `GET /healthz`.
Checks, in order: signature (401), payload and the worker's own request rules (422), tenant rate limit (429);
then publishes (202, or 503 when Kafka does not acknowledge in time, so the platform retries). When the GPU pool is
busy or down (`producer_examples.pool_watch`) a shop's request goes to the template pool instead, answered
`degraded` (its fallback, `template` by default), or, with the fallback `none`, gets 503 when busy. Connections go
through `consumer.http_server.connection_guard`: header and body deadlines and a bound on open connections (408 / 503).
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
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import ValidationError

from consumer.core.clock import utc_now
from consumer.core.degrade import DEGRADED_REASON_HEADER, choose_fallback, degrade
from consumer.core.moderation import ContentPolicy
from consumer.core.rate_limit import Clock, TenantLimiter
from consumer.errors import SignatureError, VidgenError
from consumer.http_server.connection_guard import ConnectionGuard, GuardedSite
from consumer.http_server.health_routes import add_probe_routes
from consumer.http_server.request_metrics import HttpMetrics, measured
from consumer.http_server.server_spans import server_spans
from consumer.kafka.clients import ensure_topics, make_producer
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.telemetry.logs import configure_logging
from producer_examples.dedupe import RecentKeys
from producer_examples.hook_settings import HookSettings
from producer_examples.pool_watch import PoolWatch, watching
from producer_examples.products import ProductCreated, build_request
from producer_examples.publishing import RequestPublisher
from producer_examples.signing import SIGNATURE_HEADER, verify
from producer_examples.tracer_setup import make_tracer_provider
from schemas.events import VideoRequest

__all__ = ["GUARD", "ROUTE", "main", "make_app", "serve"]

log = logging.getLogger(__name__)

ROUTE = "/webhooks/product-created"
GUARD = web.AppKey("connection_guard", ConnectionGuard)


class _Hook:
    def __init__(
        self, hook: HookSettings, settings: Settings, *, wall_clock: Clock, monotonic: Clock, degraded: Counter
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
        self._degraded = degraded
        self.publisher: RequestPublisher | None = None
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
            return web.json_response({"error": "invalid_signature", "reason": exc.reason}, status=401)
        try:
            product = ProductCreated.model_validate_json(body)
        except ValidationError as exc:
            return web.json_response({"error": "invalid_payload", "fields": _field_errors(exc)}, status=422)
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
            )
        except VidgenError as exc:  # what the worker would reject the request with, told to the shop now
            log.info("webhook refused: %s on %s", exc.code, exc.field or "the request")
            field = {"field": exc.field or "(request)", "message": exc.message, "type": exc.code}
            return web.json_response({"error": "invalid_payload", "fields": [field]}, status=422)
        if video_request.request_id in self._recent:
            return web.json_response({"request_id": video_request.request_id, "duplicate": True}, status=202)
        wait_s = self._limiter.try_take(product.shop_id)
        if wait_s > 0:
            retry_after = str(max(1, math.ceil(wait_s)))
            body_out = {"error": "rate_limited", "retry_after_s": round(wait_s, 3)}
            return web.json_response(body_out, status=429, headers={"Retry-After": retry_after})
        return await self._publish(video_request, shop_id=product.shop_id)

    async def _publish(self, video_request: VideoRequest, *, shop_id: str) -> web.Response:
        """To the GPU pool's topic, or to the template pool's (degraded) when the GPU pool is busy or down and the
        shop's fallback allows it; 503 when busy and it does not."""
        if self.publisher is None:
            return web.json_response({"error": "starting"}, status=503, headers={"Retry-After": "5"})
        busy = self.pool is not None and self.pool.busy(self._hook.max_queued)
        reason = degrade(
            busy=busy,
            down=self.pool is not None and self.pool.down(self._hook.pool_down_s),
            fallback=choose_fallback(None, self._hook.shop_fallback.get(shop_id), self._hook.fallback),
        )
        if reason is None and busy:
            return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "30"})
        topic = None if reason is None else self._template_topic  # None: the request's lane on the GPU pool
        headers = [] if reason is None else [(DEGRADED_REASON_HEADER, reason.encode())]
        try:
            async with asyncio.timeout(self._hook.publish_timeout_s):
                await self.publisher.publish(video_request, extra_headers=headers, topic=topic)
        except (KafkaError, TimeoutError) as exc:
            log.error("publishing %s failed: %r", video_request.request_id, exc)  # noqa: TRY400 - no traceback needed
            return web.json_response({"error": "unavailable"}, status=503, headers={"Retry-After": "10"})
        self._recent.add(video_request.request_id)
        answer: dict[str, Any] = {"request_id": video_request.request_id, "duplicate": False, "degraded": False}
        if reason is not None:
            trace.get_current_span().set_attribute("vidgen.degraded_reason", reason)
            self._degraded.labels(reason=reason).inc()
            answer.update(degraded=True, degraded_reason=reason)
        return web.json_response(answer, status=202)


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in error["loc"]), "message": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]


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
    registry = CollectorRegistry()
    degraded = Counter(
        "vidgen_hook_degraded",
        "Requests sent to the template pool, by reason: busy, pool_down.",
        ["reason"],
        registry=registry,
    )
    state = _Hook(hook, settings, wall_clock=wall_clock, monotonic=monotonic, degraded=degraded)
    Gauge(
        "vidgen_hook_gpu_queue",
        "Requests on the GPU pool's topics not yet answered (its consumer group's lag), as last read.",
        registry=registry,
    ).set_function(lambda: float(state.pool.lag or 0) if state.pool is not None else 0.0)
    Gauge("vidgen_hook_gpu_pool_down", "1 while the GPU pool counts as down.", registry=registry).set_function(
        lambda: float(state.pool is not None and state.pool.down(hook.pool_down_s))
    )
    guard = ConnectionGuard(hook.http_limits())
    gpu_topics = [settings.requests_topic, settings.bulk_topic]

    async def kafka_producer(_: web.Application) -> AsyncIterator[None]:
        if settings.create_topics:
            await ensure_topics(settings, [*gpu_topics, settings.template_topic])
        producer = make_producer(settings)
        await producer.start()
        state.publisher = RequestPublisher(producer, settings=settings, tracer=tracer)
        try:
            async with watching(settings, topics=gpu_topics, interval_s=hook.pool_check_s, clock=utc_now) as pool:
                state.pool = pool
                yield
        finally:
            state.publisher = None
            state.pool = None
            await producer.stop()

    async def producer_ready() -> str | None:
        return None if state.publisher is not None else "the Kafka producer is not started"

    app = web.Application(
        client_max_size=hook.max_body_bytes,
        middlewares=[server_spans(tracer), measured(HttpMetrics("vidgen_hook", registry)), guard.middleware],
    )
    app[GUARD] = guard
    app.cleanup_ctx.append(kafka_producer)
    app.router.add_post(ROUTE, state.product_created)
    add_probe_routes(app, checks={"kafka": producer_ready}, registry=registry)
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
