"""The video models a deployment serves, by public id: each one's family (what it can render: sizes, the frame rule,
frames per second, whether it takes a start image or a negative prompt, its guidance range) and the topics its
requests go to; and a submission's OpenAI-style fields (`model`, `size`, `seconds`) in the request contract's
terms. Pure.

`seconds` becomes frames at the request's `fps` (the model's when the body names none): the smallest count on the
model's frame grid (`step * k + 1`) whose duration `frames / fps` is at least `seconds`, so a video is never shorter
than asked; past the model's most frames the request is refused, naming `seconds`. A job reports `seconds` back as
`frames / fps` of the frames the model renders (rounded to milliseconds).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from consumer.errors import InvalidRequest

__all__ = [
    "EASYANIMATE",
    "MODEL_HEADER",
    "TEMPLATE",
    "TEMPLATE_MODEL_ID",
    "ModelFamily",
    "ModelRegistry",
    "VideoModel",
    "contract_fields",
    "seconds_text",
    "size_text",
]

TEMPLATE_MODEL_ID = "template"
MODEL_HEADER = "vidgen-model"
"""Header of a request record the job API published: the public id of the model it asked for."""
_SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})")
_MAX_SECONDS_TEXT = 16
_OPENAI_ONLY = frozenset({"model", "size", "seconds", "input_reference"})


def _unix(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class ModelFamily:
    """What a family of checkpoints can render, as the worker serving it enforces or does it."""

    name: str
    owned_by: str
    created: int  # Unix seconds: when the family was released (upstream) or added (vidgen's own)
    size_multiple: int  # width and height are multiples of this
    min_side: int
    max_side: int
    frame_step: int  # frames are `frame_step * k + 1`: the VAE's temporal compression
    max_frames: int
    fps: int  # the rate it was trained at, and a request's default
    start_image: bool
    negative_prompt: bool
    guidance: tuple[float, float] | None  # None: it takes no guidance (the value is ignored)

    @property
    def frame_rule(self) -> str:
        return f"{self.frame_step}k+1" if self.frame_step > 1 else "any"

    def rendered_frames(self, frames: int) -> int:
        """The frames it renders for a request of `frames`: the largest count on its grid not above it."""
        return (max(1, frames) - 1) // self.frame_step * self.frame_step + 1

    def frames_for(self, seconds: Decimal, fps: int) -> int:
        """The smallest count on its grid lasting at least `seconds` at `fps`."""
        needed = max(1, math.ceil(seconds * fps))
        steps = -(-(needed - 1) // self.frame_step)  # ceiling division
        return steps * self.frame_step + 1

    def check_side(self, value: int, *, field: str) -> None:
        if not self.min_side <= value <= self.max_side or value % self.size_multiple:
            raise InvalidRequest(
                f"{field} must be {self.min_side}-{self.max_side} pixels, a multiple of {self.size_multiple}, for "
                f"this model",
                field=field,
            )


EASYANIMATE = ModelFamily(
    name="easyanimate",
    owned_by="alibaba-pai",
    created=_unix(2025, 1, 21),  # EasyAnimate V5.1 (Qwen2-VL text encoder), the only version diffusers loads
    size_multiple=16,
    min_side=256,
    max_side=1024,
    frame_step=4,
    max_frames=49,
    fps=8,
    start_image=True,
    negative_prompt=True,
    guidance=(1.0, 20.0),
)
TEMPLATE = dataclasses.replace(
    EASYANIMATE,  # the same sizes, most frames and fps: the request contract's bounds
    name="template",
    owned_by="vidgen",
    created=_unix(2026, 12, 1),  # the template renderer: a slow zoom over the start image, or a title card
    frame_step=1,
    negative_prompt=False,
    guidance=None,
)


@dataclass(frozen=True)
class VideoModel:
    """A model under its public id, and where its requests go: `topic` (interactive), `bulk_topic` (bulk lane)."""

    id: str
    family: ModelFamily
    topic: str
    bulk_topic: str

    def topic_for(self, priority: str | None) -> str:
        return self.bulk_topic if priority == "bulk" else self.topic


class ModelRegistry:
    """The deployment's models; the first is the default of a request that names none."""

    def __init__(self, models: Sequence[VideoModel]) -> None:
        if not models:
            raise ValueError("a deployment serves at least one model")
        self._by_id = {model.id: model for model in models}
        if len(self._by_id) != len(models):
            raise ValueError("model ids must be unique")
        self.default = models[0]

    def __iter__(self) -> Iterator[VideoModel]:
        return iter(self._by_id.values())

    def get(self, model_id: str | None) -> VideoModel | None:
        return self._by_id.get(model_id) if model_id is not None else None

    def resolve(self, value: object) -> VideoModel:
        """The model a submission names (None: the default); `InvalidRequest` naming `model` for any other."""
        if value is None:
            return self.default
        model = self._by_id.get(value) if isinstance(value, str) else None
        if model is None:
            served = ", ".join(sorted(self._by_id))
            raise InvalidRequest(f"model must be one this API serves: {served}", code="model_not_found", field="model")
        return model

    def of_topic(self, topic: str) -> VideoModel | None:
        """The model whose requests go to `topic` (the first, when several share it)."""
        return next((model for model in self if topic in (model.topic, model.bulk_topic)), None)


def size_text(width: int, height: int) -> str:
    return f"{width}x{height}"


def seconds_text(frames: int, fps: int) -> str:
    """`frames / fps` as OpenAI's `seconds` string: decimal, to the millisecond, no trailing zeros."""
    return f"{frames / fps:.3f}".rstrip("0").rstrip(".")


def contract_fields(fields: Mapping[str, Any], model: VideoModel, *, image_part: bool) -> dict[str, Any]:
    """The submission's fields in the request contract's terms, checked against `model`: `model` removed, `size`
    ("WxH") as `width` and `height`, `seconds` as `num_frames`, `input_reference: {"image_url"}` as `image_url`, and
    `fps` the model's unless the body names one (OpenAI's fields given as null count as absent). `image_part`: the
    submission carries a start image file. `InvalidRequest` names the field at fault."""
    family = model.family
    out = {name: value for name, value in fields.items() if name not in _OPENAI_ONLY}
    fields = {name: value for name, value in fields.items() if value is not None or name not in _OPENAI_ONLY}
    if "input_reference" in fields:
        if "image_url" in fields or image_part:
            raise InvalidRequest("send one start image", field="input_reference")
        out["image_url"] = _reference_url(fields["input_reference"])
    _dimensions(fields, out, family)
    _duration(fields, out, family)
    if (image_part or "image_url" in out) and not family.start_image:
        raise InvalidRequest("this model takes no start image", field="input_reference")
    if out.get("negative_prompt") and not family.negative_prompt:
        raise InvalidRequest("this model takes no negative prompt", field="negative_prompt")
    guidance = out.get("guidance_scale")
    if family.guidance is not None and isinstance(guidance, int | float) and not isinstance(guidance, bool):
        low, high = family.guidance
        if not low <= guidance <= high:
            raise InvalidRequest(f"guidance_scale must be {low:g}-{high:g} for this model", field="guidance_scale")
    return out


def _reference_url(value: object) -> object:
    """OpenAI's reference object, `{"image_url": URL}`: the URL (the contract checks it). File ids are OpenAI's."""
    if not isinstance(value, Mapping) or set(value) != {"image_url"}:
        raise InvalidRequest(
            "input_reference must be an image file, or an object with only image_url", field="input_reference"
        )
    return value["image_url"]


def _dimensions(fields: Mapping[str, Any], out: dict[str, Any], family: ModelFamily) -> None:
    if "size" in fields:
        if "width" in fields or "height" in fields:
            raise InvalidRequest("send size, or width and height, not both", field="size")
        out["width"], out["height"] = _size(fields["size"], family)
        return
    for name in ("width", "height"):
        if _whole(out.get(name)) is not None:
            family.check_side(out[name], field=name)


def _duration(fields: Mapping[str, Any], out: dict[str, Any], family: ModelFamily) -> None:
    fps = out.setdefault("fps", family.fps)
    if "seconds" in fields:
        if "num_frames" in fields:
            raise InvalidRequest("send seconds or num_frames, not both", field="seconds")
        rate = _whole(fps)
        if rate is None or rate < 1:
            raise InvalidRequest("fps must be a whole number of at least 1", field="fps")
        out["num_frames"] = _frames(fields["seconds"], family, rate)
    elif (frames := _whole(out.get("num_frames"))) is not None and frames > family.max_frames:
        raise InvalidRequest(f"num_frames must be at most {family.max_frames} for this model", field="num_frames")


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _size(value: object, family: ModelFamily) -> tuple[int, int]:
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequest('size must be "WIDTHxHEIGHT" in pixels, such as "512x512"', field="size")
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        family.check_side(side, field="size")
    return width, height


def _frames(value: object, family: ModelFamily, fps: int) -> int:
    seconds = _seconds(value)
    # At 1 fps or more a video of more than max_frames seconds has too many frames: refused before any arithmetic.
    frames = family.frames_for(seconds, fps) if seconds <= family.max_frames else family.max_frames + 1
    if frames > family.max_frames:
        longest = seconds_text(family.rendered_frames(family.max_frames), fps)
        raise InvalidRequest(
            f"seconds must be at most {longest} for this model at {fps} fps ({family.max_frames} frames)",
            field="seconds",
        )
    return frames


def _seconds(value: object) -> Decimal:
    """A positive, finite duration from a string (OpenAI sends one) or a JSON number."""
    text = str(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else ""
    try:
        seconds = Decimal(text) if 0 < len(text) <= _MAX_SECONDS_TEXT else Decimal("NaN")
    except InvalidOperation:
        seconds = Decimal("NaN")
    if not seconds.is_finite() or seconds <= 0:
        raise InvalidRequest('seconds must be a positive number of seconds, such as "4"', field="seconds")
    return seconds
