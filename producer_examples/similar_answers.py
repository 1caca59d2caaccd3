"""The product hook's similar-video fallback: a product whose shop already has a completed, non-degraded video of it
(`producer_examples.product_videos`) is answered at once with that video when the GPU pool is busy or down and the
shop's fallback is `similar`: its result published to `video.results` by the hook itself, in the job API's shape
(`consumer.core.similar.similar_answer`: `completed`, `degraded`, `similar_to` the earlier request, the same MP4 and
poster; the degraded reason in the `vidgen-degraded-reason` header). Nothing is rendered, nothing copied: no S3 call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Tracer

from consumer.core.clock import WallClock, utc_now
from consumer.core.similar import similar_answer
from consumer.kafka.clients import ensure_topics
from consumer.kafka.record_publisher import RecordPublisher
from consumer.settings import Settings
from producer_examples.hook_settings import HookSettings
from producer_examples.product_videos import ProductVideos, product_video_follower
from schemas.events import VideoRequest, VideoResult

__all__ = ["HOOK_WORKER_ID", "LINK_MARGIN", "SimilarAnswers", "similar_answers"]

HOOK_WORKER_ID = "product-hook"
"""`worker_id` of a result the hook published itself (an earlier video of the product)."""
LINK_MARGIN = timedelta(minutes=10)
"""How long an answer's links (the earlier result's presigned URLs) must still work: else the template pool answers."""


class SimilarAnswers:
    def __init__(
        self, videos: ProductVideos, publisher: RecordPublisher, *, results_topic: str, clock: WallClock = utc_now
    ) -> None:
        self._videos = videos
        self._publisher = publisher
        self._results_topic = results_topic
        self._clock = clock

    def __len__(self) -> int:
        return len(self._videos)

    def find(self, request: VideoRequest) -> VideoResult | None:
        """The shop's most recent video of the request's product in the request's aspect ratio, or None."""
        product_id = request.metadata.get("product_id")
        if product_id is None:
            return None
        valid_until = self._clock() + LINK_MARGIN
        return self._videos.latest(
            request.tenant_id, product_id, request.width, request.height, links_valid_until=valid_until
        )

    async def answer(
        self, request: VideoRequest, earlier: VideoResult, *, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Publish `request`'s result showing `earlier`'s video (found by `find`), with `headers`."""
        result = similar_answer(earlier, request, now=self._clock(), worker_id=HOOK_WORKER_ID)
        await self._publisher.publish(self._results_topic, result.request_id, result, headers=headers)


@contextlib.asynccontextmanager
async def similar_answers(
    hook: HookSettings, settings: Settings, producer: AIOKafkaProducer, *, tracer: Tracer
) -> AsyncIterator[SimilarAnswers | None]:
    """SimilarAnswers while the block runs, its index followed from the results and control topics; None (nothing
    read) when no shop's fallback is `similar`."""
    if hook.fallback != "similar" and "similar" not in hook.shop_fallback.values():
        yield None
        return
    if settings.create_topics:
        await ensure_topics(settings, [settings.results_topic, settings.control_topic])
    videos = ProductVideos(hook.similar_capacity)
    follower = product_video_follower(settings, videos)
    await follower.start()
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        publisher = RecordPublisher(producer, tracer=tracer, source=settings.event_source)
        yield SimilarAnswers(videos, publisher, results_topic=settings.results_topic)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await follower.stop()
