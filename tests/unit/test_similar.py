"""The similar-video fallback's matching (consumer/core/similar.py), the print at the edge (a real JPEG re-encode and
resize of one generated product photo match it, another product does not) and the view's index of a tenant's
videos (SQLite in a temporary file: only completed, non-degraded, not deleted videos of the caller's own tenant)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from bench.product_photos import jpeg_bytes, png_bytes, print_of, product_photo
from consumer.api.submission.similar_answer import similar_result
from consumer.api.view.database import ViewDatabase
from consumer.api.view.job_state import Answered, CancelRequested, Event, JobState, Submitted
from consumer.core.similar import BANDS, MAX_DISTANCE, Candidate, ImagePrint, best_match, index_keys, same_image
from schemas.events import VideoControl, VideoRequest, VideoResult

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
GREY = bytes([200] * 12)


def _bits(*positions: int) -> int:
    return sum(1 << position for position in positions)


HALF = _bits(*range(0, 64, 2))  # 32 bits set: informative


def test_a_reencoded_and_a_resized_copy_match_another_product_does_not() -> None:
    photo = product_photo(7)
    original = print_of(png_bytes(photo))
    reencoded = print_of(jpeg_bytes(photo, quality=60))
    resized = print_of(jpeg_bytes(photo.resize((300, 300), Image.Resampling.LANCZOS)))
    other = print_of(png_bytes(product_photo(8)))
    assert original.sha256 != reencoded.sha256 != resized.sha256
    assert same_image(original, reencoded) and same_image(original, resized)
    assert not same_image(original, other)
    assert set(index_keys(original)) & set(index_keys(reencoded))  # the index finds the copy


def test_the_print_travels_as_text_and_anything_else_is_ignored() -> None:
    image = ImagePrint("ab" * 32, HALF, GREY)
    assert ImagePrint.of_text(image.text) == image
    for bad in ("", "x" * 105, image.text + ".00", image.text.replace("a", "g", 1), "ab" * 32 + "." + "0" * 16):
        assert ImagePrint.of_text(bad) is None


def test_within_the_distance_and_the_colours_is_the_same_image() -> None:
    image = ImagePrint("a" * 64, HALF, GREY)
    near = ImagePrint("b" * 64, HALF ^ _bits(*range(1, 2 * MAX_DISTANCE, 2)), GREY)  # MAX_DISTANCE bits apart
    far = ImagePrint("c" * 64, HALF ^ _bits(*range(1, 2 * MAX_DISTANCE + 2, 2)), GREY)
    recoloured = ImagePrint("d" * 64, HALF, bytes([200] * 11 + [240]))
    assert same_image(image, near) and not same_image(image, far) and not same_image(image, recoloured)
    # Pigeonhole: within the distance, two hashes share a band key, so the index finds every match.
    assert set(index_keys(image)[1:]) & set(index_keys(near)[1:])
    assert len(index_keys(image)) == 1 + BANDS


def test_a_flat_image_matches_only_its_own_bytes() -> None:
    flat = ImagePrint("a" * 64, 0, GREY)
    other_flat = ImagePrint("b" * 64, 0, GREY)
    assert not same_image(flat, other_flat) and same_image(flat, ImagePrint("a" * 64, 0, bytes(12)))
    assert index_keys(flat) == ["s:" + "a" * 64]


def test_the_most_recent_match_of_the_same_aspect_ratio() -> None:
    image = ImagePrint("a" * 64, HALF, GREY)

    def candidate(job_id: str, width: int, height: int, minutes: int, phash: int = HALF) -> Candidate:
        return Candidate(job_id, ImagePrint("f" * 64, phash, GREY), width, height, T0 + timedelta(minutes=minutes))

    found = [
        candidate("old-square", 256, 256, 1),
        candidate("new-square", 512, 512, 2),  # the same aspect at another size matches
        candidate("newest-wide", 512, 288, 3),
        candidate("newest-other-photo", 256, 256, 4, phash=~HALF & (2**64 - 1)),
    ]
    best = best_match(image, 256, 256, found)
    assert best is not None and best.job_id == "new-square"
    assert best_match(image, 288, 512, found) is None


# The view's index


def _request(job_id: str, tenant: str, *, width: int = 256) -> VideoRequest:
    return VideoRequest(request_id=job_id, tenant_id=tenant, prompt="a shoe", width=width, height=256)


def _completed(request: VideoRequest, *, minutes: int, degraded: bool = False) -> Answered:
    at = T0 + timedelta(minutes=minutes)
    key = f"s3://out/{request.tenant_id}/{request.request_id}"
    video = {
        "uri": key + ".mp4",
        "url": "https://example/v",
        "url_expires_at": at,
        "poster_uri": key + ".jpg",
        "poster_url": "https://example/p",
        "bytes": 10,
        "sha256": "0" * 64,
        "width": request.width,
        "height": request.height,
        "num_frames": 9,
        "fps": 8,
        "duration_s": 1.1,
    }
    result = VideoResult.model_validate(
        {
            "request_id": request.request_id,
            "tenant_id": request.tenant_id,
            "status": "completed",
            "video": video,
            "timings": {"received_at": at, "completed_at": at},
            "worker_id": "gpu-1",
            "model": "tiny",
            "degraded": degraded,
        }
    )
    return Answered(result, at)


@pytest.fixture
def view(tmp_path: Path) -> ViewDatabase:
    return ViewDatabase(str(tmp_path / "view.sqlite"))


def _job(job_id: str, tenant: str, image: ImagePrint, minutes: int, **options: bool | int) -> list[Event]:
    request = _request(job_id, tenant, width=int(options.get("width", 256)))
    return [
        Submitted(request, T0, image_print=image.text),
        _completed(request, minutes=minutes, degraded=bool(options.get("degraded", False))),
    ]


def test_the_index_answers_the_tenants_own_completed_videos_only(view: ViewDatabase) -> None:
    image = ImagePrint("a" * 64, HALF, GREY)
    copy = ImagePrint("b" * 64, HALF ^ 1, GREY)
    view.apply([*_job("vid-1", "shop-1", image, 1), *_job("vid-2", "shop-1", image, 2)], {}, {})
    view.apply([*_job("vid-3", "shop-1", image, 3, degraded=True), *_job("vid-4", "shop-2", image, 4)], {}, {})
    view.apply([Submitted(_request("vid-5", "shop-1"), T0, image_print=image.text)], {}, {})  # still queued
    found = view.similar("shop-1", copy, 256, 256)
    assert found is not None and found.id == "vid-2"  # the most recent, not the degraded one nor shop-2's
    assert view.similar("shop-3", copy, 256, 256) is None
    other = view.similar("shop-2", copy, 512, 512)
    assert other is not None and other.id == "vid-4"

    delete = VideoControl(action="delete", request_id="vid-2", tenant_id="shop-1", requested_at=T0)
    view.apply([CancelRequested(delete, T0 + timedelta(minutes=5))], {}, {})
    found = view.similar("shop-1", copy, 256, 256)
    assert found is not None and found.id == "vid-1"


def test_a_job_leaves_the_index_with_its_row(tmp_path: Path) -> None:
    view = ViewDatabase(str(tmp_path / "capped.sqlite"), tenant_max_jobs=3)
    image = ImagePrint("a" * 64, HALF, GREY)
    view.apply(_job("vid-1", "shop-1", image, 1), {}, {})
    for index in range(2, 5):  # the cap of 3 jobs takes the oldest terminal one
        view.apply(_job(f"vid-{index}", "shop-1", ImagePrint(f"{index}" * 64, _bits(index), GREY), index), {}, {})
    assert view.similar("shop-1", image, 256, 256) is None
    rows = view._db.execute("SELECT COUNT(*) FROM image_keys WHERE job_id = 'vid-1'").fetchone()
    assert rows == (0,)


def test_the_similar_answer_names_the_earlier_objects_and_the_new_metadata() -> None:
    request = _request("vid-1", "shop-1")
    earlier = _completed(request, minutes=1).result
    state = JobState("vid-1", "shop-1", "completed", 100, 1, T0, T0, 2, result=earlier.model_dump(mode="json"))
    new = VideoRequest(request_id="vid-9", tenant_id="shop-1", prompt="again", metadata={"sku": "42"})
    result = similar_result(state, new, now=T0)
    assert (result.request_id, result.similar_to, result.degraded, result.status) == (
        "vid-9",
        "vid-1",
        True,
        "completed",
    )
    assert result.video == earlier.video and result.metadata == {"sku": "42"} and result.worker_id == "api"
