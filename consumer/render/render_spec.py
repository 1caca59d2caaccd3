"""What one render is asked for (`RenderSpec`) and what it gives back (`Rendered`, and when it held the model:
`ModelHold`), and the frames' conversion to 8-bit RGB. Shared by the renderer, the job pipeline, benchmarks, tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from consumer.memory.modes import MemoryMode

__all__ = ["ModelHold", "ProgressFn", "RenderSpec", "Rendered", "to_uint8"]

ProgressFn = Callable[[int, int], None]
_Frames = TypeVar("_Frames", NDArray[np.float32], NDArray[np.uint8])


@dataclass(frozen=True)
class RenderSpec:
    prompt: str
    negative_prompt: str
    width: int
    height: int
    num_frames: int
    steps: int
    guidance_scale: float
    seed: int


@dataclass(frozen=True)
class Rendered(Generic[_Frames]):
    frames: _Frames  # (F, H, W, 3): floats in [0, 1] from `render_float`, 8-bit RGB from `render`
    mode: MemoryMode | None  # the memory mode it ran in (None: modes not managed, e.g. the stand-in)


@dataclass
class ModelHold:
    """When one render held the model, written by the renderer as it happens: `taken_at` once the model is taken
    (after any wait for the previous render; set even if the render then fails), `released_at` and `seconds` once
    a render that succeeded gives it back."""

    taken_at: datetime | None = None
    released_at: datetime | None = None
    seconds: float | None = None


def to_uint8(frames: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Pipeline output in [0, 1] (F, H, W, 3) to 8-bit RGB."""
    # A float32 temporary of one frame at a time, rounded and clipped in place: a third less time than chained
    # temporaries, and no second float copy of the whole video (a 1024x1024x49 one is 617 MB).
    converted = np.empty(frames.shape, dtype=np.uint8)
    scaled = np.empty(frames.shape[1:], dtype=np.float32)
    for index in range(frames.shape[0]):
        np.multiply(frames[index], 255.0, out=scaled, dtype=np.float32)
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        converted[index] = scaled
    return converted
