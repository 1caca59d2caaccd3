"""LTX-Video 0.9.x: `LTXImageToVideoPipeline` and `LTXPipeline` on one set of components (every checkpoint serves both;
a folder naming `LTXConditionPipeline` loads the same components). The transformer is told the video's frame rate
(`frame_rate` scales its temporal positions): the worker passes the fps it encodes at, the request's.

Its VAE compresses 32x in space and 8x in time, so frames are 8k+1 (other counts would lose their tail) and sizes
multiples of 32 (the pipelines refuse others). Classifier-free guidance runs as one batch of two."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLLTXVideo,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    LTXImageToVideoPipeline,
    LTXPipeline,
    LTXVideoTransformer3DModel,
)
from numpy.typing import NDArray

from consumer.core.model_families import LTX
from consumer.memory.coefficients import LTX_ACTIVATIONS
from consumer.render.families.base import FamilyAdapter, Pipelines, StepHook, pipeline_call
from consumer.render.families.tiny_text import TEXT_DIM, seeded, t5_encoder, t5_tokenizer
from consumer.render.render_spec import RenderSpec

__all__ = ["LtxAdapter"]

_COMPONENTS = ("scheduler", "vae", "text_encoder", "tokenizer", "transformer")


class LtxAdapter(FamilyAdapter):
    family = LTX
    pipeline_classes = frozenset({"LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"})
    default_model_id = "ltx-video"
    activations = LTX_ACTIVATIONS

    def load(self, source: str, dtype: torch.dtype, pipeline_class: str) -> Pipelines:
        return _both(DiffusionPipeline.from_pretrained(source, torch_dtype=dtype).components)

    def tiny(self) -> Pipelines:
        """The real compressions (VAE 32x space in a 4x patch and three 2x stages, 8x time), `timestep_conditioning`
        like 0.9.1+ VAEs (decoding draws noise from the generator), the 0.9.x scheduler with dynamic shifting."""
        tokenizer = t5_tokenizer(model_max_length=128)
        with seeded(0) as make:
            transformer = make(
                lambda: LTXVideoTransformer3DModel(
                    in_channels=8,
                    out_channels=8,
                    patch_size=1,
                    patch_size_t=1,
                    num_attention_heads=4,
                    attention_head_dim=8,
                    cross_attention_dim=32,
                    num_layers=2,  # the step cache always runs the first block
                    caption_channels=TEXT_DIM,
                )
            )
            vae = make(
                lambda: AutoencoderKLLTXVideo(
                    latent_channels=8,
                    block_out_channels=(8, 8, 8, 8),
                    decoder_block_out_channels=(8, 8, 8, 8),
                    layers_per_block=(1, 1, 1, 1, 1),
                    decoder_layers_per_block=(1, 1, 1, 1, 1),
                    spatio_temporal_scaling=(True, True, True, False),
                    decoder_spatio_temporal_scaling=(True, True, True, False),
                    decoder_inject_noise=(False,) * 5,
                    upsample_residual=(False,) * 4,
                    upsample_factor=(1,) * 4,
                    timestep_conditioning=True,
                    patch_size=4,
                    patch_size_t=1,
                    encoder_causal=True,
                    decoder_causal=False,
                )
            )
            text_encoder = make(lambda: t5_encoder(len(tokenizer)))
        # Lightricks/LTX-Video's scheduler_config.json (0.9.x): dynamic shifting, `mu` from the sequence length.
        scheduler = FlowMatchEulerDiscreteScheduler(
            base_image_seq_len=1024,
            base_shift=0.95,
            max_image_seq_len=4096,
            max_shift=2.05,
            shift=1.0,
            shift_terminal=0.1,
            use_dynamic_shifting=True,
            time_shift_type="exponential",
        )
        return _both(
            {
                "scheduler": scheduler,
                "vae": vae,
                "text_encoder": text_encoder,
                "tokenizer": tokenizer,
                "transformer": transformer,
            }
        )

    def call(
        self, pipelines: Pipelines, spec: RenderSpec, prepared: object, on_step: StepHook, generator: torch.Generator
    ) -> NDArray[np.float32]:
        image: dict[str, Any] = {} if prepared is None else {"image": prepared}
        return pipeline_call(
            pipelines.for_kind(prepared), spec, on_step, generator, frame_rate=spec.fps or self.family.fps, **image
        )


def _both(components: dict[str, Any]) -> Pipelines:
    shared = {name: components[name] for name in _COMPONENTS}
    return Pipelines(i2v=LTXImageToVideoPipeline(**shared), t2v=LTXPipeline(**shared))
