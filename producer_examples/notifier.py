"""Result notifications: consumer group `video-notifier` on video.results -> a signed POST to each tenant's webhook:
the operator-configured one (`VIDGEN_NOTIFIER_WEBHOOKS`) and the tenant's own endpoints (`POST /v1/webhooks`, read
from the compacted webhooks topic when `VIDGEN_WEBHOOK_SECRETS_KEY` is set; then video.progress too, for endpoints
that subscribed to `video.progress`). Every POST is signed the Standard Webhooks way.

At least once: an offset is committed only after its result was delivered, skipped (a duplicate, or a tenant
without a webhook) or dead-lettered to `video.results.notifier-dlq`, and only as part of the contiguous finished
prefix of its partition (`consumer.core.offsets.OffsetTracker`). Deliveries run concurrently, at most
`tenant_concurrency` per tenant and `max_concurrency` in all, so a slow tenant delays only itself; a tenant whose
endpoint keeps failing has its breaker opened, and its results go straight to the DLQ with
`endpoint_unavailable` (replay them by producing the DLQ records back to video.results). Deliveries to one tenant
may arrive out of order. Duplicates are recognised by a key of tenant, request id and status
(`dedupe.delivery_key`) in a bounded in-memory LRU (see `dedupe.py` for what production needs); receivers get
the same key in `X-Vidgen-Delivery` to dedupe on their side too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.core.clock import utc_now
from consumer.core.webhook_events import ProgressThrottle
from consumer.images.url_vetting import IPNetwork, Resolve
from consumer.kafka.clients import client_options, ensure_topics, make_producer
from consumer.settings import ConfigurationError, Settings, describe_config_error
from consumer.telemetry.logs import configure_logging
from consumer.webhooks.directory import EndpointDirectory
from consumer.webhooks.follower import DirectoryFollower
from consumer.webhooks.secret_box import SecretBox
from consumer.webhooks.url_rules import webhook_rules
from producer_examples.delivery import WebhookDelivery
from producer_examples.dispatches import DispatchPlanner
from producer_examples.notifier_loop import Notifier
from producer_examples.notifier_metrics import NotifierMetrics
from producer_examples.notifier_settings import NotifierSettings
from producer_examples.tracer_setup import make_tracer_provider

__all__ = ["main", "serve"]

log = logging.getLogger(__name__)


async def serve(
    settings: Settings,
    notifier: NotifierSettings,
    stop: asyncio.Event,
    *,
    tracer: Tracer,
    on_http_port: Callable[[int], None] | None = None,
    trusted_networks: tuple[IPNetwork, ...] = (),
    ssl_context: ssl.SSLContext | None = None,
    resolver: Resolve | None = None,
) -> int:
    """Run until `stop` is set; returns the exit code.

    `trusted_networks`, `ssl_context` and `resolver` exist for tests and private deployments: networks exempt
    from the public-address rule, the CA bundle webhooks are verified against, and the DNS resolver."""
    running: Notifier | None = None
    metrics = NotifierMetrics()
    box = SecretBox(settings.webhook_secrets_key) if settings.webhook_secrets_key is not None else None
    directory = EndpointDirectory()

    async def healthz(_: web.Request) -> web.Response:
        state = running.health() if running else {}
        joined = bool(running and running.joined)
        return web.json_response(
            {"status": "ok", "consumer_group": joined, "webhook_endpoints": len(directory), **state}
        )

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, notifier.host, notifier.port).start()
        if on_http_port is not None:
            on_http_port(int(runner.addresses[0][1]))
        topics = [settings.results_topic, notifier.dlq_topic]
        progress = box is not None and notifier.progress_deliveries
        if settings.create_topics:
            tenant_topics = [settings.webhooks_topic, *([settings.progress_topic] if progress else [])]
            await ensure_topics(settings, [*topics, *(tenant_topics if box is not None else [])])
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=notifier.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            fetch_max_wait_ms=notifier.fetch_max_wait_ms,
        )
        producer = make_producer(settings)
        delivery = WebhookDelivery(
            rules=webhook_rules(
                timeout_s=notifier.timeout_s,
                internal_hosts=notifier.allow_hosts,
                trusted_networks=trusted_networks,
                subject="webhook url",
            ),
            endpoint_rules=webhook_rules(
                timeout_s=notifier.timeout_s,
                internal_hosts=settings.webhook_allow_hosts,
                trusted_networks=trusted_networks,
                subject="webhook url",
            ),
            tracer=tracer,
            max_attempts=notifier.max_attempts,
            backoff_initial_s=notifier.backoff_initial_s,
            backoff_max_s=notifier.backoff_max_s,
            timeout_s=notifier.timeout_s,
            ssl_context=ssl_context,
            resolver=resolver,
        )
        running = Notifier(
            settings=settings,
            notifier=notifier,
            consumer=consumer,
            producer=producer,
            delivery=delivery,
            planner=DispatchPlanner(
                operator_webhooks=notifier.webhooks,
                directory=directory,
                box=box,
                throttle=ProgressThrottle(interval_s=notifier.progress_interval_s),
                wall_clock=utc_now,
                monotonic=time.monotonic,
            ),
            tracer=tracer,
            metrics=metrics,
        )
        subscribed = [settings.results_topic, *([settings.progress_topic] if progress else [])]
        consumer.subscribe(subscribed, listener=running.listener())
        async with _following(settings, directory, stop, enabled=box is not None):
            await producer.start()
            try:
                await consumer.start()
                try:
                    await running.run(stop)
                finally:
                    await consumer.stop()
            finally:
                await producer.stop()
    finally:
        await runner.cleanup()
    return 0


@contextlib.asynccontextmanager
async def _following(
    settings: Settings, directory: EndpointDirectory, stop: asyncio.Event, *, enabled: bool
) -> AsyncIterator[None]:
    """The tenant endpoints, read to where the topic ended before any result is (so none is missed), then followed
    until the block ends."""
    if not enabled:
        yield
        return
    follower = DirectoryFollower(settings, directory)
    await follower.start()
    done = asyncio.Event()
    task = asyncio.create_task(follower.run(done))
    try:
        await follower.ready.wait()
        yield
    finally:
        done.set()
        await task
        await follower.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m producer_examples.notifier`: configured by VIDGEN_* and VIDGEN_NOTIFIER_* variables."""
    del argv
    try:
        settings, notifier = Settings(), NotifierSettings()
    except ConfigurationError as exc:
        print(f"notifier: invalid configuration:\n{describe_config_error(exc)}", file=sys.stderr)
        return 2
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    provider = make_tracer_provider("vidgen-notifier", notifier.otlp_endpoint)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await serve(settings, notifier, stop, tracer=provider.get_tracer(__name__))

    try:
        return asyncio.run(runner())
    except KafkaError as exc:
        log.critical("notifier stopped: %r", exc)
        return 1
    finally:
        provider.shutdown()


if __name__ == "__main__":
    sys.exit(main())
