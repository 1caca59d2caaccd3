"""What each model family can render, and the worker's intake refusing what its model cannot, naming field and rule."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest
from diffusers.pipelines.hunyuan_video1_5.image_processor import generate_crop_size_list

from consumer.core.intake import Rejection, parse_request
from consumer.core.model_families import (
    COGVIDEOX,
    EASYANIMATE,
    FAMILIES,
    HUNYUANVIDEO15,
    LTX,
    MODEL_NOT_SERVED,
    WAN,
    ModelFamily,
    check_request,
    family_named,
    size_buckets,
)
from consumer.errors import InvalidRequest
from schemas.events import VideoRequest

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared


@dataclass(frozen=True)
class Served:
    id: str
    family: ModelFamily


def _request(**fields: Any) -> VideoRequest:
    return VideoRequest.model_validate({"request_id": "r-1", "tenant_id": "t", "prompt": "a shoe", **fields})


def _refusal(family: ModelFamily, **fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        check_request(_request(**fields), Served(family.name, family))
    return raised.value


@pytest.mark.parametrize(
    ("family", "fields", "field", "message"),
    [
        (WAN, {"num_frames": 10}, "num_frames", "num_frames must be 4k+1 for wan, got 10"),
        (LTX, {"num_frames": 25 - 4}, "num_frames", "num_frames must be 8k+1 for ltx, got 21"),
        (COGVIDEOX, {"num_frames": 25}, "num_frames", "num_frames must be 16k+1 for cogvideox, got 25"),
        (COGVIDEOX, {"num_frames": 1}, "num_frames", "num_frames must be 17-161 for cogvideox, got 1"),
        (EASYANIMATE, {"num_frames": 53}, "num_frames", "num_frames must be 1-49 for easyanimate, got 53"),
        (LTX, {"width": 528}, "width", "width must be a multiple of 32 in 256-1280 for ltx, got 528"),
        (EASYANIMATE, {"height": 1280}, "height", "height must be a multiple of 16 in 256-1024 for easyanimate, got"),
        (WAN, {"guidance_scale": 20.0, "num_frames": 5}, None, None),
    ],
)
def test_each_family_refuses_what_it_cannot_render_naming_field_and_rule(
    family: ModelFamily, fields: dict[str, Any], field: str | None, message: str | None
) -> None:
    if message is None:
        check_request(_request(**fields), Served(family.name, family))
        return
    refusal = _refusal(family, **fields)
    assert (refusal.code, refusal.field) == ("invalid_field", field)
    assert refusal.message.startswith(message)


def test_every_family_takes_its_own_defaults() -> None:
    for family in FAMILIES:
        frames = family.rendered_frames(family.max_frames)
        size = 512 if family.image_bucket_size is None else 640
        check_request(_request(num_frames=frames, width=size, height=size, fps=family.fps), Served("m", family))
        assert (frames - 1) % family.frame_step == 0 and family.min_frames <= frames


def test_a_checkpoint_narrows_its_family() -> None:
    i2v_only = dataclasses.replace(COGVIDEOX, text_to_video=False)
    assert _refusal(i2v_only, num_frames=17).field == "image_url"
    check_request(_request(num_frames=17, image_url="s3://bucket/a.png"), Served("c", i2v_only))
    t2v_only = dataclasses.replace(WAN, start_image=False)
    assert _refusal(t2v_only, image_url="s3://bucket/a.png").field == "image_url"
    ti2v = dataclasses.replace(WAN, size_multiple=32)
    assert _refusal(ti2v, width=720, num_frames=5).message.startswith("width must be a multiple of 32")


def test_a_family_without_negative_prompts_or_guidance_says_so() -> None:
    plain = dataclasses.replace(WAN, negative_prompt=False, guidance=None)
    assert _refusal(plain, negative_prompt="blur", num_frames=5).field == "negative_prompt"
    check_request(_request(guidance_scale=20.0, num_frames=5), Served("w", plain))
    narrow = dataclasses.replace(WAN, guidance=(1.0, 8.0))
    refusal = _refusal(narrow, guidance_scale=9.5, num_frames=5)
    assert (refusal.field, refusal.message) == ("guidance_scale", "guidance_scale must be 1-8 for wan, got 9.5")


def test_a_request_for_another_model_is_refused_as_not_served() -> None:
    refusal = _refusal(WAN, model="ltx-video", num_frames=5)
    assert (refusal.code, refusal.field) == (MODEL_NOT_SERVED, "model")
    assert "wan" in refusal.message
    check_request(_request(model="wan", num_frames=5), Served("wan", WAN))


def test_hunyuan_image_to_video_sizes_are_its_buckets() -> None:
    """The pipeline picks the bucket of the start image's aspect ratio; the worker decodes the image at the
    requested size, so a bucket size renders at exactly that size and nothing else is accepted."""
    image = {"image_url": "s3://bucket/a.png", "num_frames": 121}
    check_request(_request(width=848, height=480, **image), Served("h", HUNYUANVIDEO15))
    refusal = _refusal(HUNYUANVIDEO15, width=512, height=512, **image)
    assert refusal.field == "width" and "848x480" in refusal.message
    check_request(_request(width=512, height=512, num_frames=121), Served("h", HUNYUANVIDEO15))  # text-to-video


@pytest.mark.parametrize("base", [256, 640, 960])
def test_size_buckets_are_diffusers_own(base: int) -> None:
    assert size_buckets(base) == frozenset(generate_crop_size_list(base, 16))


def test_family_named_lists_the_supported_ones() -> None:
    assert family_named("ltx") is LTX
    with pytest.raises(ValueError, match="supported: easyanimate, wan, ltx, hunyuanvideo15, cogvideox"):
        family_named("sora")


def test_the_worker_intake_rejects_with_field_and_rule() -> None:
    record = {"request_id": "r-9", "tenant_id": "t", "prompt": "a shoe", "num_frames": 10, "metadata": {"k": "v"}}
    outcome = parse_request(json.dumps(record).encode(), max_bytes=10_000, model=Served("wan", WAN))
    assert isinstance(outcome, Rejection)
    assert (outcome.request_id, outcome.field, outcome.metadata) == ("r-9", "num_frames", {"k": "v"})
    assert outcome.error.message == "num_frames must be 4k+1 for wan, got 10"
    assert isinstance(parse_request(json.dumps(record).encode(), max_bytes=10_000), VideoRequest)  # no model: as before
