"""What a model family's adapter is, and the model the loader hands the renderer: the family's pipelines, the rules of
the checkpoint (`consumer.core.model_families`), and its public id.

An adapter owns what differs between families: which `model_index.json` pipeline classes it recognises, how a folder
loads (and which of image-to-video and text-to-video it can serve), its tiny build, the rules of a loaded checkpoint,
its memory coefficients (`consumer.memory.coefficients`), and the pipeline call for one `RenderSpec` with a hook after
every denoising step. Everything else (intake, admission, lanes, cache keys, encode, upload, results) is shared.

The step hook (`StepHook`) is called with the index of each finished step, on the render thread; raising from it
stops the render at that step boundary (a cancel, the deadline). A later resume-from-checkpoint hook fits the same
place: the adapters reach the loop only through `callback_on_step_end` or a wrapper of `scheduler.step`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from consumer.core.model_families import ModelFamily
from consumer.memory.coefficients import ActivationCoefficients
from consumer.render.render_spec import RenderSpec
from consumer.render.step_cache import StepCache

__all__ = [
    "FamilyAdapter",
    "LoadedModel",
    "Pipelines",
    "StepHook",
    "frames_of",
    "on_step_end",
    "pipeline_call",
    "scheduler_step_hook",
    "served_kinds",
]

StepHook = Callable[[int, Any], None]
"""Called after each denoising step with its index (0-based) and the loop's latents after it (None where the pipeline
does not show them: no checkpoint is taken there); raising stops the render there."""


@dataclass(frozen=True)
class Pipelines:
    """The pipelines of one loaded checkpoint, built from one set of components: image-to-video and text-to-video
    (the same object where one pipeline does both; None where the checkpoint cannot)."""

    i2v: Any | None
    t2v: Any | None

    @property
    def main(self) -> Any:
        """The pipeline memory modes, profiles and the warm-up act on: the one with the most components."""
        main = self.i2v if self.i2v is not None else self.t2v
        if main is None:
            raise ValueError("a model serves image-to-video, text-to-video or both")
        return main

    def each(self) -> list[Any]:
        """Every distinct pipeline, main first."""
        found: list[Any] = []
        for pipeline in (self.i2v, self.t2v):
            if pipeline is not None and all(pipeline is not seen for seen in found):
                found.append(pipeline)
        return found

    def transformers(self) -> list[torch.nn.Module]:
        """Every distinct transformer (a text-to-video sibling may have weights of its own)."""
        found: list[torch.nn.Module] = []
        for pipeline in self.each():
            if all(pipeline.transformer is not seen for seen in found):
                found.append(pipeline.transformer)
        return found

    def for_kind(self, image: object | None) -> Any:
        return self.i2v if image is not None else self.t2v


class FamilyAdapter(abc.ABC):
    """One family's differences. Subclasses set the class attributes and implement `load`, `tiny` and `call`."""

    family: ClassVar[ModelFamily]
    pipeline_classes: ClassVar[frozenset[str]]  # `_class_name` values of model_index.json it loads
    default_model_id: ClassVar[str]
    activations: ClassVar[ActivationCoefficients]
    checkpoints: ClassVar[bool] = True  # its step hook shows the loop's latents, so renders can be checkpointed

    @abc.abstractmethod
    def load(self, source: str, dtype: torch.dtype, pipeline_class: str) -> Pipelines:
        """The checkpoint at `source` (a folder or a hub id) whose model_index.json names `pipeline_class`."""

    @abc.abstractmethod
    def tiny(self) -> Pipelines:
        """The real pipeline classes with tiny random weights, built offline and deterministically (float32)."""

    def rules(self, pipelines: Pipelines) -> ModelFamily:
        """The family's rules narrowed to the loaded checkpoint (which kinds it serves, its own sizes...)."""
        return served_kinds(self.family, pipelines)

    def prepare(self, spec: RenderSpec, image: Image.Image | None, pipelines: Pipelines) -> object:
        """CPU-side inputs made before the model is taken (overlapping the previous render): the image as it is."""
        return image

    @abc.abstractmethod
    def call(
        self, pipelines: Pipelines, spec: RenderSpec, prepared: object, on_step: StepHook, generator: torch.Generator
    ) -> NDArray[np.float32]:
        """One render: frames (F, H, W, 3) in [0, 1], drawing its noise from `generator` (seeded with the request's
        seed). Runs on the render thread under `torch.inference_mode`."""


def served_kinds(family: ModelFamily, pipelines: Pipelines, **rules: Any) -> ModelFamily:
    """`family` with the kinds `pipelines` serve (start image, text-to-video) and any other `rules` changed."""
    return dataclasses.replace(
        family, start_image=pipelines.i2v is not None, text_to_video=pipelines.t2v is not None, **rules
    )


@dataclass(frozen=True)
class LoadedModel:
    """What the loader hands the renderer. `rules` None: no family rules apply (the template renderer, the stand-in,
    a bare pipeline a test passes). `step_cache`: cache-dit on its transformers, when enabled."""

    adapter: FamilyAdapter
    pipelines: Pipelines
    rules: ModelFamily | None
    model_id: str | None = None
    step_cache: StepCache | None = None

    @property
    def pipeline(self) -> Any:
        return self.pipelines.main


def on_step_end(on_step: StepHook) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
    """`on_step` as a diffusers `callback_on_step_end`."""

    def callback(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        on_step(step, tensors.get("latents"))
        return tensors

    return callback


@contextlib.contextmanager
def scheduler_step_hook(scheduler: Any, on_step: StepHook) -> Iterator[None]:
    """`on_step` after every `scheduler.step` of this scheduler instance, for pipelines without a step callback
    (HunyuanVideo-1.5). The wrapper keeps `step`'s signature (pipelines inspect it) and is removed on exit."""
    original = scheduler.step
    calls = 0

    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        output = original(*args, **kwargs)
        on_step(calls, None)
        calls += 1
        return output

    scheduler.step = step
    try:
        yield
    finally:
        del scheduler.step


def pipeline_call(
    pipeline: Any, spec: RenderSpec, on_step: StepHook, generator: torch.Generator, **extra: Any
) -> NDArray[np.float32]:
    """The call most families' pipelines share: prompts, size, frames, steps and guidance of `spec`, the `generator`
    (seeded with its seed), frames as numpy, `on_step` as the step callback; `extra` adds the family's own arguments."""
    output = pipeline(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,  # None crashes some encode_prompt with guidance; "" is neutral
        height=spec.height,
        width=spec.width,
        num_frames=spec.num_frames,
        num_inference_steps=spec.steps,
        guidance_scale=spec.guidance_scale,
        generator=generator,
        output_type="np",
        callback_on_step_end=on_step_end(on_step),
        **extra,
    )
    return frames_of(output)


def frames_of(output: Any) -> NDArray[np.float32]:
    """The first video of a pipeline's `output_type="np"` output, as float32."""
    frames: NDArray[np.float32] = np.asarray(output.frames[0], dtype=np.float32)
    return frames
