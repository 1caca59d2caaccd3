"""EasyAnimate V5.1 InP: one inpaint pipeline does both kinds (image-to-video from a start video whose first frame is
the image and the rest masked; text-to-video fully masked). Also the call of the pipelines that mimic its signature:
the template renderer and the stand-in, which take the start image as `source_image` (they declare `source_size`).
Those two serve without diffusers: it is imported where a real or tiny EasyAnimate pipeline is built or called."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from consumer.core.model_families import EASYANIMATE
from consumer.memory.coefficients import EASYANIMATE_ACTIVATIONS
from consumer.render.families.base import FamilyAdapter, Pipelines, StepHook, pipeline_call
from consumer.render.render_spec import RenderSpec

__all__ = ["EasyAnimateAdapter"]


class EasyAnimateAdapter(FamilyAdapter):
    family = EASYANIMATE
    pipeline_classes = frozenset({"EasyAnimateInpaintPipeline"})
    default_model_id = "easyanimate-v5.1"
    activations = EASYANIMATE_ACTIVATIONS

    def load(self, source: str, dtype: torch.dtype, pipeline_class: str) -> Pipelines:
        from diffusers import EasyAnimateInpaintPipeline

        pipeline = EasyAnimateInpaintPipeline.from_pretrained(source, torch_dtype=dtype)
        return Pipelines(i2v=pipeline, t2v=pipeline)

    def tiny(self) -> Pipelines:
        from consumer.render.tiny import build_tiny_pipeline

        pipeline = build_tiny_pipeline()
        return Pipelines(i2v=pipeline, t2v=pipeline)

    def prepare(self, spec: RenderSpec, image: Image.Image | None, pipelines: Pipelines) -> object:
        """The start video and its mask (all masked without an image); nothing for a pipeline that resamples the
        start image itself (a frame-sized start video would only take memory: 12 B/pixel)."""
        if _takes_source_image(pipelines.main):
            return image
        from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent

        return get_image_to_video_latent(image, None, spec.num_frames, (spec.height, spec.width))

    def call(
        self, pipelines: Pipelines, spec: RenderSpec, prepared: object, on_step: StepHook, generator: torch.Generator
    ) -> NDArray[np.float32]:
        pipeline = pipelines.main
        extra: dict[str, Any]
        if _takes_source_image(pipeline):
            extra = {"source_image": prepared, "video": None, "mask_video": None}
        else:
            video, mask = cast("tuple[torch.Tensor, torch.Tensor]", prepared)  # what prepare made for it
            extra = {"video": video, "mask_video": mask}
        return pipeline_call(pipeline, spec, on_step, generator, **extra)


def _takes_source_image(pipeline: Any) -> bool:
    return hasattr(pipeline, "source_size")
