"""HunyuanVideo-1.5: `HunyuanVideo15Pipeline` and `HunyuanVideo15ImageToVideoPipeline`; a folder serves the kind its
pipeline class names (the 480p/720p I2V and T2V checkpoints are separate weights). The tiny model builds both.

Two differences from the other families (diffusers 0.42): guidance is not a call argument but the pipeline's `guider`
component (its `guidance_scale` set per render), and there is no `callback_on_step_end`: progress and cancel
wrap the scheduler's `step` for the render. The image-to-video pipeline takes no size: it crops the start image to
the aspect bucket nearest its ratio at the transformer's `target_size`; the worker decodes the image at the requested
size, which the rules require to be one of those buckets, so the video is exactly the size asked for."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo15,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideo15ImageToVideoPipeline,
    HunyuanVideo15Pipeline,
    HunyuanVideo15Transformer3DModel,
)
from diffusers.guiders import ClassifierFreeGuidance
from numpy.typing import NDArray
from transformers import (
    ByT5Tokenizer,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLTextModel,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
    SiglipVisionModel,
)

from consumer.core.model_families import HUNYUANVIDEO15, ModelFamily
from consumer.memory.coefficients import HUNYUANVIDEO15_ACTIVATIONS
from consumer.render.families.base import FamilyAdapter, Pipelines, StepHook, frames_of, scheduler_step_hook
from consumer.render.families.tiny_text import QWEN_EOS, TEXT_DIM, qwen2_tokenizer, seeded, t5_encoder
from consumer.render.render_spec import RenderSpec

__all__ = ["HunyuanVideo15Adapter"]

_QWEN_DIM = 16
_TINY_TARGET = 64  # the tiny transformer's bucket resolution: 64x64 is a bucket


class HunyuanVideo15Adapter(FamilyAdapter):
    family = HUNYUANVIDEO15
    pipeline_classes = frozenset({"HunyuanVideo15Pipeline", "HunyuanVideo15ImageToVideoPipeline"})
    default_model_id = "hunyuanvideo-1.5"
    activations = HUNYUANVIDEO15_ACTIVATIONS
    checkpoints = False  # no step callback: its hook wraps scheduler.step and sees no latents

    def load(self, source: str, dtype: torch.dtype, pipeline_class: str) -> Pipelines:
        pipeline = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype)
        if isinstance(pipeline, HunyuanVideo15ImageToVideoPipeline):
            return Pipelines(i2v=pipeline, t2v=None)
        return Pipelines(i2v=None, t2v=pipeline)

    def tiny(self) -> Pipelines:
        """Qwen2.5-VL text model, ByT5 glyph encoder (a T5 encoder fed by `ByT5Tokenizer`), SigLIP image encoder; one
        transformer for both kinds (in_channels = 2 x latent + 1, as the real ones); the VAE compresses 16x in space
        and 4x in time like the real one."""
        tokenizer = qwen2_tokenizer()
        tokenizer_2 = ByT5Tokenizer()
        eos = tokenizer.convert_tokens_to_ids(QWEN_EOS)
        with seeded(0) as make:
            transformer = make(
                lambda: HunyuanVideo15Transformer3DModel(
                    in_channels=9,
                    out_channels=4,
                    num_attention_heads=2,
                    attention_head_dim=8,
                    num_layers=2,  # the step cache always runs the first block
                    num_refiner_layers=1,
                    mlp_ratio=2.0,
                    patch_size=1,
                    patch_size_t=1,
                    text_embed_dim=_QWEN_DIM,
                    text_embed_2_dim=TEXT_DIM,
                    image_embed_dim=12,
                    rope_axes_dim=(2, 2, 4),
                    target_size=_TINY_TARGET,
                )
            )
            vae = make(
                lambda: AutoencoderKLHunyuanVideo15(
                    latent_channels=4,
                    block_out_channels=(8, 8, 8, 8, 8),
                    layers_per_block=1,
                    spatial_compression_ratio=16,
                    temporal_compression_ratio=4,
                    downsample_match_channel=False,
                    upsample_match_channel=False,
                )
            )
            text_encoder = make(
                lambda: Qwen2_5_VLTextModel(
                    Qwen2_5_VLTextConfig(
                        hidden_size=_QWEN_DIM,
                        intermediate_size=16,
                        num_hidden_layers=2,
                        num_attention_heads=2,
                        num_key_value_heads=2,
                        vocab_size=len(tokenizer),
                        bos_token_id=eos,
                        eos_token_id=eos,
                        rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                        rope_theta=1000000.0,
                    )
                )
            )
            text_encoder_2 = make(lambda: t5_encoder(len(tokenizer_2)))
            image_encoder = make(
                lambda: SiglipVisionModel(
                    SiglipVisionConfig(
                        hidden_size=12,
                        intermediate_size=16,
                        num_hidden_layers=1,
                        num_attention_heads=2,
                        image_size=32,
                        patch_size=8,
                    )
                )
            )
        parts: dict[str, Any] = {
            "text_encoder": text_encoder,
            "tokenizer": tokenizer,
            "transformer": transformer,
            "vae": vae,
            # The 480p checkpoints' scheduler: the pipeline passes its own linear sigmas, shifted by 5.
            "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0),
            "text_encoder_2": text_encoder_2,
            "tokenizer_2": tokenizer_2,
            "guider": ClassifierFreeGuidance(guidance_scale=6.0),
        }
        feature_extractor = SiglipImageProcessorPil(size={"height": 32, "width": 32})
        i2v = HunyuanVideo15ImageToVideoPipeline(
            **parts, image_encoder=image_encoder, feature_extractor=feature_extractor
        )
        return Pipelines(i2v=i2v, t2v=HunyuanVideo15Pipeline(**parts))

    def rules(self, pipelines: Pipelines) -> ModelFamily:
        rules = super().rules(pipelines)
        return dataclasses.replace(rules, image_bucket_size=int(pipelines.main.transformer.config.target_size))

    def call(
        self, pipelines: Pipelines, spec: RenderSpec, prepared: object, on_step: StepHook, generator: torch.Generator
    ) -> NDArray[np.float32]:
        pipeline = pipelines.for_kind(prepared)
        # The guider is a component (shared by both kinds): set per render, one render at a time.
        pipeline.guider.guidance_scale = spec.guidance_scale
        kind: dict[str, Any] = {"height": spec.height, "width": spec.width} if prepared is None else {"image": prepared}
        with scheduler_step_hook(pipeline.scheduler, on_step):
            output = pipeline(
                prompt=spec.prompt,
                negative_prompt=spec.negative_prompt,
                num_frames=spec.num_frames,
                num_inference_steps=spec.steps,
                generator=generator,
                output_type="np",
                **kind,
            )
        return frames_of(output)
