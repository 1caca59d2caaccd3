"""The product hook's index of product videos (producer_examples/product_videos.py): only completed, non-degraded
videos of products the hook asked for, per shop and product, the most recent of the request's aspect ratio, bounded,
and forgotten on a `delete` command of the video's own tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bench.similar_lookup import measure_hook
from producer_examples.product_videos import PER_PRODUCT, ProductVideos
from producer_examples.products import HOOK_SOURCE
from schemas.events import VideoControl, VideoResult

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _result(request_id: str, shop: str = "shop-1", product: str = "p-1", *, at: int = 0, **fields: Any) -> VideoResult:
    size = fields.pop("size", (512, 512))
    video = {
        "uri": f"s3://b/{request_id}.mp4",
        "url": "https://s3.example/v.mp4",
        "url_expires_at": T0 + timedelta(seconds=at + 3_600),  # made at `at`, presigned for an hour
        "poster_uri": f"s3://b/{request_id}.jpeg",
        "poster_url": "https://s3.example/p.jpeg",
        "bytes": 1,
        "sha256": "0" * 64,
        "width": size[0],
        "height": size[1],
        "duration_s": 1.0,
        "fps": 8,
        "num_frames": 8,
    }
    done = T0 + timedelta(seconds=at)
    return VideoResult.model_validate(
        {
            "request_id": request_id,
            "tenant_id": shop,
            "status": "completed",
            "video": video,
            "metadata": {"product_id": product, "source": HOOK_SOURCE},
            "timings": {"received_at": done, "completed_at": done},
            "worker_id": "w-1",
            "model": "tiny",
        }
        | fields
    )


def _delete(request_id: str, shop: str) -> VideoControl:
    return VideoControl(action="delete", request_id=request_id, tenant_id=shop, requested_at=T0)


def _ids(videos: ProductVideos, shop: str = "shop-1", product: str = "p-1", size: tuple[int, int] = (512, 512)) -> str:
    found = videos.latest(shop, product, *size)
    return found.request_id if found is not None else ""


def test_the_most_recent_video_of_the_shops_product_in_the_requests_aspect_ratio() -> None:
    videos = ProductVideos(100)
    videos.add(_result("hook:a", at=1))
    videos.add(_result("hook:b", at=3, size=(512, 288)))
    videos.add(_result("hook:c", at=2, size=(256, 256)))  # square too, and more recent than hook:a
    assert _ids(videos) == "hook:c" and _ids(videos, size=(1024, 576)) == "hook:b"
    assert _ids(videos, size=(288, 512)) == ""  # no portrait video of it
    assert _ids(videos, shop="shop-2") == "" and _ids(videos, product="p-2") == ""  # another shop: never its video


@pytest.mark.parametrize(
    "fields",
    [
        {"degraded": True},  # a template video
        {"similar_to": "hook:x", "degraded": True},  # an answer of the fallback itself
        {"status": "failed", "video": None, "error": {"code": "cancelled", "message": "m", "retryable": False}},
        {"metadata": {"product_id": "p-1"}},  # not a request of the hook
        {"metadata": {"source": HOOK_SOURCE}},  # no product
        {"tenant_id": None},
    ],
)
def test_only_completed_rendered_videos_of_the_hooks_products_are_indexed(fields: dict[str, Any]) -> None:
    videos = ProductVideos(100)
    videos.add(_result("hook:a", **fields))
    assert (len(videos), _ids(videos)) == (0, "")


def test_a_delete_of_the_videos_own_tenant_forgets_it() -> None:
    videos = ProductVideos(100)
    videos.add(_result("hook:a", at=1))
    videos.add(_result("hook:b", at=2))
    videos.delete(_delete("hook:b", "shop-2"))  # another tenant cannot take a shop's video away
    assert _ids(videos) == "hook:b"
    videos.delete(_delete("hook:b", "shop-1"))
    assert _ids(videos) == "hook:a"
    videos.delete(_delete("hook:a", "shop-1"))
    assert (len(videos), _ids(videos)) == (0, "")


def test_a_video_whose_links_will_have_expired_is_no_answer() -> None:
    """The hook cannot presign: an earlier video answers only while its result's links still work then."""
    videos = ProductVideos(capacity=10)
    videos.add(_result("old", at=0))
    videos.add(_result("new", at=600))
    at = T0 + timedelta(seconds=3_600)  # "old"'s links expire now, "new"'s in ten minutes
    found = videos.latest("shop-1", "p-1", 512, 512, links_valid_until=at)
    assert found is not None and found.request_id == "new"
    videos.delete(_delete("new", "shop-1"))
    assert videos.latest("shop-1", "p-1", 512, 512, links_valid_until=at) is None
    assert _ids(videos) == "old"  # without a time: links not judged


def test_bounded_in_all_and_per_product() -> None:
    videos = ProductVideos(3)
    for n in range(3):
        videos.add(_result(f"hook:{n}", product=f"p-{n}"))
    videos.add(_result("hook:new", product="p-9"))
    assert len(videos) == 3 and _ids(videos, product="p-0") == ""  # the oldest read went first
    assert _ids(videos, product="p-9") == "hook:new"
    many = ProductVideos(100)
    for n in range(PER_PRODUCT + 2):
        many.add(_result(f"hook:{n}", at=n))
        many.add(_result(f"hook:{n}", at=n))  # read twice (the view re-reads the topic): kept once
    assert len(many) == PER_PRODUCT and _ids(many) == f"hook:{PER_PRODUCT + 1}"
    with pytest.raises(ValueError, match="capacity"):
        ProductVideos(0)


def test_the_benchmark_measures_a_small_index() -> None:
    report = measure_hook(200, 10)  # `python -m bench.similar_lookup --hook`; it checks its own answers
    assert (report["videos"], report["shops"]) == (200, 100)
    assert isinstance(report["index_mib"], float) and report["index_mib"] > 0
