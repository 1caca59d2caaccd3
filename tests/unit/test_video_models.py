"""The model registry and OpenAI's `model`, `size` and `seconds` in the request contract's terms: pure."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.core.video_models import (
    EASYANIMATE,
    TEMPLATE,
    ModelFamily,
    ModelRegistry,
    VideoModel,
    contract_fields,
    seconds_text,
)
from consumer.errors import InvalidRequest

GPU = VideoModel("easyanimate-v5.1", EASYANIMATE, topic="video.requests", bulk_topic="video.requests.bulk")
CARDS = VideoModel("template", TEMPLATE, topic="video.requests.template", bulk_topic="video.requests.template")
MODELS = ModelRegistry([GPU, CARDS])


def _refused(fields: dict[str, Any], model: VideoModel = GPU, *, image_part: bool = False) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as refused:
        contract_fields(fields, model, image_part=image_part)
    return refused.value


def test_the_registry_resolves_the_default_and_names_the_field_for_anything_else() -> None:
    assert MODELS.resolve(None) is GPU and MODELS.resolve("template") is CARDS
    for value in ("sora-2", "", 7, ["template"]):
        with pytest.raises(InvalidRequest) as refused:
            MODELS.resolve(value)
        assert (refused.value.code, refused.value.field) == ("model_not_found", "model")
    assert MODELS.of_topic("video.requests.bulk") is GPU and MODELS.of_topic("video.requests.template") is CARDS
    assert MODELS.of_topic("elsewhere") is None
    assert GPU.topic_for("bulk") == "video.requests.bulk" and GPU.topic_for(None) == "video.requests"
    with pytest.raises(ValueError, match="unique"):
        ModelRegistry([GPU, GPU])


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [("1", 9), ("0.5", 5), ("0.1", 1), ("4", 33), (4, 33), (1.5, 13), ("6", 49), ("6.125", 49)],
)
def test_seconds_become_the_fewest_frames_on_the_grid_that_last_that_long(seconds: Any, frames: int) -> None:
    assert contract_fields({"seconds": seconds}, GPU, image_part=False)["num_frames"] == frames


def test_seconds_follow_the_requests_fps_and_the_template_renders_any_count() -> None:
    assert contract_fields({"seconds": "1", "fps": 16}, GPU, image_part=False)["num_frames"] == 17
    assert contract_fields({"seconds": "1"}, CARDS, image_part=False)["num_frames"] == 8
    assert contract_fields({}, GPU, image_part=False) == {"fps": 8}  # the model's fps when the body names none
    nulls = {"model": None, "size": None, "seconds": None, "input_reference": None}
    assert contract_fields(nulls, GPU, image_part=False) == {"fps": 8}  # OpenAI's fields as null: absent


@pytest.mark.parametrize("seconds", ["6.2", "12", "1e9999999", "abc", "0", "-1", "nan", "inf", "", True, [4]])
def test_seconds_the_model_cannot_render_are_refused_naming_seconds(seconds: Any) -> None:
    refused = _refused({"seconds": seconds})
    assert (refused.code, refused.field) == ("invalid_field", "seconds")


def test_longest_seconds_are_named_in_the_refusal() -> None:
    assert "at most 6.125" in _refused({"seconds": "7"}).message


@given(
    seconds=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("60"), places=3),
    fps=st.integers(min_value=1, max_value=60),
    family=st.sampled_from([EASYANIMATE, TEMPLATE]),
)
def test_frames_for_seconds_are_on_the_grid_long_enough_and_the_fewest(
    seconds: Decimal, fps: int, family: ModelFamily
) -> None:
    frames = family.frames_for(seconds, fps)
    assert (frames - 1) % family.frame_step == 0
    assert Decimal(frames) / fps >= seconds
    assert frames == 1 or Decimal(frames - family.frame_step) / fps < seconds
    assert family.rendered_frames(frames) == frames


def test_a_size_becomes_width_and_height_within_the_models_sizes() -> None:
    assert contract_fields({"size": "672x384"}, GPU, image_part=False)["width"] == 672
    fields = contract_fields({"size": "288x512"}, GPU, image_part=False)
    assert (fields["width"], fields["height"]) == (288, 512)
    for size in ("512", "512x", "x512", "250x250", "2048x512", "512X512", " 512x512", "0x0", 512):
        assert _refused({"size": size}).field == "size"
    assert _refused({"size": "512x512", "width": 256}).field == "size"
    assert _refused({"width": 250}).field == "width"


def test_what_a_model_does_not_take_is_refused_naming_the_field() -> None:
    assert _refused({"seconds": "1", "num_frames": 9}).field == "seconds"
    assert _refused({"num_frames": 50}).field == "num_frames"
    assert _refused({"negative_prompt": "blur"}, CARDS).field == "negative_prompt"
    assert contract_fields({"negative_prompt": ""}, CARDS, image_part=False)["negative_prompt"] == ""
    assert _refused({"seconds": "1", "fps": "fast"}).field == "fps"
    no_pictures = VideoModel("t2v", dataclasses.replace(EASYANIMATE, start_image=False), "a", "a")
    assert _refused({}, no_pictures, image_part=True).field == "input_reference"
    assert _refused({"image_url": "https://x.test/a.png"}, no_pictures).field == "input_reference"
    narrow = VideoModel("g", dataclasses.replace(EASYANIMATE, guidance=(1.0, 6.0)), "a", "a")
    assert _refused({"guidance_scale": 7.5}, narrow).field == "guidance_scale"


def test_an_input_reference_object_gives_the_image_url() -> None:
    url = "https://cdn.shop.test/shoe.png"
    fields = contract_fields({"input_reference": {"image_url": url}}, GPU, image_part=False)
    assert fields["image_url"] == url and "input_reference" not in fields
    for reference in ({"file_id": "file-1"}, {"image_url": url, "file_id": "f"}, url, 7):
        assert _refused({"input_reference": reference}).field == "input_reference"
    assert _refused({"input_reference": {"image_url": url}}, image_part=True).field == "input_reference"
    assert _refused({"input_reference": {"image_url": url}, "image_url": url}).field == "input_reference"


def test_seconds_are_written_to_the_millisecond_without_trailing_zeros() -> None:
    assert [seconds_text(*pair) for pair in [(9, 8), (16, 8), (25, 8), (10, 3), (1, 8)]] == [
        "1.125",
        "2",
        "3.125",
        "3.333",
        "0.125",
    ]
    assert [EASYANIMATE.rendered_frames(count) for count in (1, 4, 5, 10, 25, 49)] == [1, 1, 5, 9, 25, 49]
    assert (EASYANIMATE.frame_rule, TEMPLATE.frame_rule) == ("4k+1", "any")
