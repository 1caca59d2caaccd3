"""The product hook's record of the videos it knows completed, for its similar-video fallback: each shop's completed,
non-degraded videos of its products, by (shop, product id), kept in step with `video.results` and `video.control`
(`consumer.kafka.topic_follower`: every partition from the beginning, no consumer group).

A result counts when it answers a request the hook made (`metadata.source` is the hook's, `metadata.product_id`
names the product), its status is `completed`, it has a video, it is not `degraded` and is no similar answer itself.
It is indexed under its own tenant, so a lookup for one shop reads that shop's entries only: another shop's video
of the same product id is never an answer (nor is whether it exists any slower or faster to find). A `delete`
command of the job API (`video.control`, its tenant the result's) takes the video out; so does the bound: at most
`capacity` videos in all (the oldest read go first) and `PER_PRODUCT` per product (its most recent).

The hook matches on the shop and product id alone: it never fetches a product's image (the worker does), so it has no
print of it (`consumer.core.similar`). It has no S3 credentials either, so it cannot presign new links: its answer
carries the earlier result's presigned URLs, and a video is an answer only while they work for
`similar_answers.LINK_MARGIN` more (`VIDGEN_PRESIGN_TTL_S` after that video was made; the default, an hour, bounds how
old an answer can be). Until the follower has read the topics, a lookup may miss: the request then goes to the template
pool, the safe side.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from aiokafka import ConsumerRecord
from pydantic import ValidationError

from consumer.core.similar import same_aspect
from consumer.kafka.topic_follower import TopicFollower
from consumer.settings import Settings
from producer_examples.products import HOOK_SOURCE
from schemas.events import VideoControl, VideoResult

__all__ = ["PER_PRODUCT", "ProductVideos", "product_video_follower"]

PER_PRODUCT = 4
"""The most videos kept per (shop, product): its most recent ones, of whatever sizes the hook asked for."""


@dataclass(frozen=True, slots=True)
class _Video:
    """One indexed video: what a lookup judges, and its result as JSON (parsed only when it answers: a few times
    smaller than the parsed model, whose presigned URLs dominate)."""

    request_id: str
    product: tuple[str, str]
    width: int
    height: int
    completed_at: datetime
    links_expire_at: datetime  # when its presigned URLs stop working
    result: bytes


class ProductVideos:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._by_request: OrderedDict[str, _Video] = OrderedDict()  # in the order read: the oldest go first
        self._by_product: dict[tuple[str, str], list[str]] = {}  # (shop, product id) -> request ids, oldest first

    def __len__(self) -> int:
        return len(self._by_request)

    def add(self, result: VideoResult) -> None:
        """Index `result` if it is a completed, non-degraded video of a product the hook asked for."""
        key = _product_of(result)
        if key is None or result.video is None or result.request_id in self._by_request:
            return
        video, done = result.video, result.timings.completed_at
        value = result.model_dump_json(exclude_none=True).encode()
        self._by_request[result.request_id] = _Video(
            result.request_id, key, video.width, video.height, done, video.url_expires_at, value
        )
        videos = self._by_product.setdefault(key, [])
        videos.append(result.request_id)
        if len(videos) > PER_PRODUCT:
            self._forget(videos[0])
        while len(self._by_request) > self._capacity:
            self._forget(next(iter(self._by_request)))

    def delete(self, command: VideoControl) -> None:
        """Forget the video a `delete` command names, when the command's tenant is the video's."""
        video = self._by_request.get(command.request_id)
        if command.action == "delete" and video is not None and video.product[0] == command.tenant_id:
            self._forget(command.request_id)

    def latest(
        self, shop_id: str, product_id: str, width: int, height: int, *, links_valid_until: datetime | None = None
    ) -> VideoResult | None:
        """The shop's most recent video of the product with the aspect ratio `width`:`height` (and, given
        `links_valid_until`, whose presigned URLs still work then), or None."""
        videos = (self._by_request[request_id] for request_id in self._by_product.get((shop_id, product_id), ()))
        matches = [
            video
            for video in videos
            if same_aspect(video.width, video.height, width, height)
            and (links_valid_until is None or video.links_expire_at > links_valid_until)
        ]
        best = max(matches, key=lambda video: (video.completed_at, video.request_id), default=None)
        return VideoResult.model_validate_json(best.result) if best is not None else None

    def _forget(self, request_id: str) -> None:
        video = self._by_request.pop(request_id)
        videos = self._by_product[video.product]
        videos.remove(request_id)
        if not videos:
            del self._by_product[video.product]


def _product_of(result: VideoResult) -> tuple[str, str] | None:
    """(shop, product id) of a result to index, or None when it is not one."""
    product_id = result.metadata.get("product_id")
    usable = result.status == "completed" and result.video is not None and not result.degraded
    if not usable or result.similar_to is not None or result.tenant_id is None or product_id is None:
        return None
    return (result.tenant_id, product_id) if result.metadata.get("source") == HOOK_SOURCE else None


def product_video_follower(settings: Settings, videos: ProductVideos) -> TopicFollower:
    """A follower of the results and control topics into `videos`; unreadable records are skipped."""

    def apply(record: ConsumerRecord[bytes, bytes]) -> None:
        if record.value is None:
            return
        try:
            if record.topic == settings.results_topic:
                videos.add(VideoResult.model_validate_json(record.value))
            else:
                videos.delete(VideoControl.model_validate_json(record.value))
        except ValidationError:
            return

    return TopicFollower(settings, [settings.results_topic, settings.control_topic], apply, name="product videos")
