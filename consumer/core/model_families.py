"""What each model family can render, as plain data, and the check of a request against it. Pure: the job API and the
product hook import it without torch or diffusers; the worker's adapters (`consumer/render/families/`) narrow a
family's rules to the checkpoint they loaded (`dataclasses.replace`).

A rule a request breaks is named with its field and the rule: `num_frames must be 4k+1 for wan, got 10`. Sources of
each number are in docs/running-workers.md (model families); in short, the frame rule is the VAE's temporal
compression (LTX-Video: 8; CogVideoX 1.5's authors ask for 16k+1), the size multiple the VAE's spatial compression
times the transformer's patch, and `fps` the rate the family was trained at (the default of a request that names
none). HunyuanVideo-1.5's image-to-video pipeline takes no size: it picks an aspect-ratio bucket of the start image
at the model's resolution, so an image-to-video request must name one of those buckets (`size_buckets`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from consumer.errors import InvalidRequest
from schemas.events import VideoRequest

__all__ = [
    "COGVIDEOX",
    "EASYANIMATE",
    "FAMILIES",
    "HUNYUANVIDEO15",
    "LTX",
    "MODEL_NOT_SERVED",
    "WAN",
    "ModelFamily",
    "ServedModel",
    "WorkerModel",
    "check_request",
    "family_named",
    "size_buckets",
]

MODEL_NOT_SERVED = "model_not_served"
"""The code of a request naming a model its worker does not serve (a misrouted record): never rendered."""


def _unix(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class ModelFamily:
    """What a family of checkpoints can render, as the worker serving it enforces or does it."""

    name: str
    owned_by: str
    created: int  # Unix seconds: when the family was released (upstream)
    size_multiple: int  # width and height are multiples of this
    min_side: int
    max_side: int
    frame_step: int  # frames are `frame_step * k + 1`: the VAE's temporal compression
    max_frames: int
    fps: int  # the rate it was trained at, and a request's default
    start_image: bool  # takes a start image (image-to-video)
    negative_prompt: bool
    guidance: tuple[float, float] | None  # None: it takes no guidance (the value is ignored)
    min_frames: int = 1
    text_to_video: bool = True  # renders without a start image
    image_bucket_size: int | None = None  # image-to-video sizes are the aspect buckets of this resolution

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


class ServedModel(Protocol):
    """A model under its public id: what a worker serves, or an entry of the deployment's registry."""

    @property
    def id(self) -> str: ...

    @property
    def family(self) -> ModelFamily: ...


@dataclass(frozen=True)
class WorkerModel:
    """The model a worker serves: its public id (`VIDGEN_MODEL_ID`) and the rules of the checkpoint it loaded."""

    id: str
    family: ModelFamily


# diffusers 0.42 pipelines and the model authors' own numbers; docs/running-workers.md cites each.
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
WAN = ModelFamily(
    name="wan",
    owned_by="wan-ai",
    created=_unix(2025, 7, 28),  # Wan 2.2 (TI2V-5B); Wan 2.1 checkpoints load the same way
    size_multiple=16,  # VAE 8 x patch 2 (2.1); Wan 2.2 TI2V-5B's 16x VAE makes it 32 (the adapter narrows it)
    min_side=256,
    max_side=1280,
    frame_step=4,
    max_frames=121,  # TI2V-5B's 5 s at 24 fps; Wan 2.1 was trained on 81
    fps=24,  # TI2V-5B; Wan 2.1 renders at 16
    start_image=True,
    negative_prompt=True,
    guidance=(1.0, 20.0),
)
LTX = ModelFamily(
    name="ltx",
    owned_by="lightricks",
    created=_unix(2025, 3, 5),  # LTX-Video 0.9.5, the first 2B with keyframe conditioning
    size_multiple=32,  # the pipelines refuse anything else
    min_side=256,
    max_side=1280,
    frame_step=8,  # the VAE compresses time 8x; other counts lose their tail
    max_frames=257,
    fps=25,  # `frame_rate` is a model input: the worker passes the request's fps
    start_image=True,
    negative_prompt=True,
    guidance=(1.0, 20.0),
    min_frames=9,
)
HUNYUANVIDEO15 = ModelFamily(
    name="hunyuanvideo15",
    owned_by="tencent",
    created=_unix(2025, 11, 20),
    size_multiple=16,
    min_side=256,
    max_side=1280,
    frame_step=4,
    max_frames=241,  # 10 s at 24 fps
    fps=24,
    start_image=True,
    negative_prompt=True,
    guidance=(1.0, 20.0),
    image_bucket_size=640,  # the 480p checkpoints (transformer target_size); 720p ones have 960
)
COGVIDEOX = ModelFamily(
    name="cogvideox",
    owned_by="zai-org",
    created=_unix(2024, 11, 8),  # CogVideoX 1.5
    size_multiple=16,  # VAE 8 x patch 2
    min_side=256,
    max_side=1360,
    frame_step=16,  # the authors' 16N+1 (N <= 10) for 1.5
    max_frames=161,
    fps=16,
    start_image=True,
    negative_prompt=True,
    guidance=(1.0, 20.0),
    min_frames=17,
)
FAMILIES: tuple[ModelFamily, ...] = (EASYANIMATE, WAN, LTX, HUNYUANVIDEO15, COGVIDEOX)


def family_named(name: str) -> ModelFamily:
    """The family called `name`; ValueError naming the supported ones for any other."""
    found = next((family for family in FAMILIES if family.name == name), None)
    if found is None:
        raise ValueError(f"unknown model family {name!r}; supported: {', '.join(f.name for f in FAMILIES)}")
    return found


def size_buckets(base_size: int, patch: int = 16, max_ratio: float = 4.0) -> frozenset[tuple[int, int]]:
    """(width, height) of every aspect bucket at `base_size` (HunyuanVideo-1.5's `generate_crop_size_list`: the
    largest `patch`-multiple sizes of about `base_size` squared pixels, aspect ratios up to `max_ratio`)."""
    patches = round((base_size / patch) ** 2)
    buckets = set()
    wide, high = patches, 1
    while wide > 0:
        if max(wide, high) / min(wide, high) <= max_ratio:
            buckets.add((wide * patch, high * patch))
        if (high + 1) * wide <= patches:
            high += 1
        else:
            wide -= 1
    return frozenset(buckets)


def check_request(request: VideoRequest, model: ServedModel) -> None:
    """Raise `InvalidRequest` naming the field and the rule when `request` breaks what `model` can render, or names
    another model (`model_not_served`)."""
    family = model.family
    name = family.name
    if request.model is not None and request.model != model.id:
        raise InvalidRequest(
            f"model {request.model} is not served here (this pool serves {model.id})",
            code=MODEL_NOT_SERVED,
            field="model",
        )
    _check_start_image(request, family)
    for field, value in (("width", request.width), ("height", request.height)):
        if value % family.size_multiple or not family.min_side <= value <= family.max_side:
            raise InvalidRequest(
                f"{field} must be a multiple of {family.size_multiple} in {family.min_side}-{family.max_side} for "
                f"{name}, got {value}",
                field=field,
            )
    if request.image_url is not None and family.image_bucket_size is not None:
        buckets = size_buckets(family.image_bucket_size)
        if (request.width, request.height) not in buckets:
            raise InvalidRequest(
                f"width x height must be an aspect bucket of {family.image_bucket_size}px for {name} image-to-video "
                f"(such as {_examples(buckets)}), got {request.width}x{request.height}",
                field="width",
            )
    frames = request.num_frames
    if (frames - 1) % family.frame_step:
        raise InvalidRequest(f"num_frames must be {family.frame_rule} for {name}, got {frames}", field="num_frames")
    if not family.min_frames <= frames <= family.max_frames:
        raise InvalidRequest(
            f"num_frames must be {family.min_frames}-{family.max_frames} for {name}, got {frames}", field="num_frames"
        )
    if request.negative_prompt and not family.negative_prompt:
        raise InvalidRequest(f"{name} takes no negative_prompt", field="negative_prompt")
    if family.guidance is not None:
        low, high = family.guidance
        if not low <= request.guidance_scale <= high:
            raise InvalidRequest(
                f"guidance_scale must be {low:g}-{high:g} for {name}, got {request.guidance_scale:g}",
                field="guidance_scale",
            )


def _check_start_image(request: VideoRequest, family: ModelFamily) -> None:
    if request.image_url is not None and not family.start_image:
        raise InvalidRequest(f"{family.name} as served here takes no start image", field="image_url")
    if request.image_url is None and not family.text_to_video:
        raise InvalidRequest(f"{family.name} as served here needs a start image", field="image_url")


def _examples(buckets: frozenset[tuple[int, int]]) -> str:
    """A few buckets near square, landscape first, for a message."""
    near_square = sorted(buckets, key=lambda size: (abs(size[0] / size[1] - 16 / 9), -size[0]))[:2]
    square = min(buckets, key=lambda size: abs(size[0] - size[1]))
    return ", ".join(f"{w}x{h}" for w, h in (*near_square, square))
