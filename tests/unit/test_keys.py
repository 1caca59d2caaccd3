"""Seeds and keys: identical requests map to identical keys, anything that changes the output changes them."""

from __future__ import annotations

import pytest

from consumer.core.keys import content_key, derive_seed, object_keys
from schemas.events import VideoRequest


def _request(**overrides: object) -> VideoRequest:
    base: dict[str, object] = {"request_id": "r1", "tenant_id": "t1", "prompt": "a shoe"}
    base.update(overrides)
    return VideoRequest.model_validate(base)


def test_derived_seed_ignores_identity_and_metadata() -> None:
    one = _request()
    two = _request(request_id="r2", tenant_id="t2", metadata={"a": "b"})
    assert derive_seed(one, image_sha256=None) == derive_seed(two, image_sha256=None)
    assert 0 <= derive_seed(one, image_sha256=None) < 2**32


def test_explicit_seed_wins() -> None:
    assert derive_seed(_request(seed=7), image_sha256="ab") == 7


def test_image_counts_by_bytes_not_url() -> None:
    a = _request(image_url="https://a.example/x.png")
    b = _request(image_url="s3://bucket-b/y.png")
    assert derive_seed(a, image_sha256="f" * 64) == derive_seed(b, image_sha256="f" * 64)
    assert content_key(a, seed=1, image_sha256="f" * 64, model="m") == content_key(
        b, seed=1, image_sha256="f" * 64, model="m"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a boot"},
        {"negative_prompt": "blur"},
        {"width": 768},
        {"height": 768},
        {"num_frames": 9},
        {"num_inference_steps": 10},
        {"guidance_scale": 6.0},
        {"fps": 12},
    ],
)
def test_every_output_parameter_changes_the_key(change: dict[str, object]) -> None:
    base = content_key(_request(), seed=1, image_sha256=None, model="tiny")
    assert content_key(_request(**change), seed=1, image_sha256=None, model="tiny") != base


def test_seed_image_and_model_change_the_key() -> None:
    request = _request()
    keys = {
        content_key(request, seed=1, image_sha256=None, model="tiny"),
        content_key(request, seed=2, image_sha256=None, model="tiny"),
        content_key(request, seed=1, image_sha256="a" * 64, model="tiny"),
        content_key(request, seed=1, image_sha256=None, model="/models/v51"),
    }
    assert len(keys) == 4


def test_object_keys_are_per_tenant_and_hide_the_tenant() -> None:
    key = "ab" + "0" * 62
    one = object_keys(prefix="p/", tenant_id="shop-1", key=key, poster_ext="jpeg")
    two = object_keys(prefix="p/", tenant_id="shop-2", key=key, poster_ext="jpeg")
    assert one.video != two.video
    assert one.video.startswith("p/videos/") and one.video.endswith(f"/ab/{key}.mp4")
    assert one.poster.endswith(f"{key}.poster.jpeg")
    assert "shop-1" not in one.video
