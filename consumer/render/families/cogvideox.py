"""CogVideoX: `CogVideoXPipeline` and `CogVideoXImageToVideoPipeline`; a folder serves the kind its pipeline class
names (an I2V transformer takes image latents beside the noise, twice the channels). CogVideoX 1.5 (`patch_size_t`
2: latent frames padded to even) renders 16k+1 frames up to 161 at 16 fps, as its authors ask; 1.0 checkpoints render
their trained 49 frames at 8 fps, 480-720 pixels.

The 5B checkpoints ship CogVideoXDPMScheduler, which the authors run with dynamic guidance (`use_dynamic_cfg`);
it draws noise from the generator on every step. Classifier-free guidance runs as one batch of two."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDPMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
    DiffusionPipeline,
)
from numpy.typing import NDArray

from consumer.core.model_families import COGVIDEOX, ModelFamily
from consumer.memory.coefficients import COGVIDEOX_ACTIVATIONS
from consumer.render.families.base import FamilyAdapter, Pipelines, StepHook, pipeline_call
from consumer.render.families.tiny_text import TEXT_DIM, seeded, t5_encoder, t5_tokenizer
from consumer.render.render_spec import RenderSpec

__all__ = ["CogVideoXAdapter"]


class CogVideoXAdapter(FamilyAdapter):
    family = COGVIDEOX
    pipeline_classes = frozenset({"CogVideoXPipeline", "CogVideoXImageToVideoPipeline"})
    default_model_id = "cogvideox-1.5"
    activations = COGVIDEOX_ACTIVATIONS

    def load(self, source: str, dtype: torch.dtype, pipeline_class: str) -> Pipelines:
        pipeline = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype)
        if isinstance(pipeline, CogVideoXImageToVideoPipeline):
            return Pipelines(i2v=pipeline, t2v=None)
        return Pipelines(i2v=None, t2v=pipeline)

    def tiny(self) -> Pipelines:
        """The 1.5 layout: rotary positions, `patch_size_t` 2, an I2V transformer with 2 x latent channels and the
        `ofs` embedding, a text-to-video transformer of its own; VAE 8x in space and 4x in time like the real one."""
        tokenizer = t5_tokenizer(model_max_length=226)
        common: dict[str, Any] = {
            "num_attention_heads": 2,
            "attention_head_dim": 16,
            "out_channels": 4,
            "time_embed_dim": 2,
            "text_embed_dim": TEXT_DIM,
            "num_layers": 2,  # the step cache always runs the first block
            # The rotary grid's largest size in latent pixels: 1360x768 at 8x, as CogVideoX1.5-5B's config.
            "sample_width": 170,
            "sample_height": 96,
            "sample_frames": 81,
            "patch_size": 2,
            "patch_size_t": 2,
            "temporal_compression_ratio": 4,
            "max_text_seq_length": 16,
            "use_rotary_positional_embeddings": True,
            "use_learned_positional_embeddings": False,
        }
        with seeded(0) as make:
            # The `ofs` embedding must be as wide as the time embedding (diffusers adds them).
            i2v_transformer = make(lambda: CogVideoXTransformer3DModel(in_channels=8, ofs_embed_dim=2, **common))
            t2v_transformer = make(lambda: CogVideoXTransformer3DModel(in_channels=4, **common))
            vae = make(
                lambda: AutoencoderKLCogVideoX(
                    down_block_types=("CogVideoXDownBlock3D",) * 4,
                    up_block_types=("CogVideoXUpBlock3D",) * 4,
                    block_out_channels=(8, 8, 8, 8),
                    latent_channels=4,
                    layers_per_block=1,
                    norm_num_groups=2,
                    temporal_compression_ratio=4,
                )
            )
            text_encoder = make(lambda: t5_encoder(len(tokenizer)))
        # THUDM/CogVideoX1.5-5B's scheduler_config.json: v-prediction, zero terminal SNR, trailing spacing.
        scheduler = CogVideoXDPMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            set_alpha_to_one=True,
            snr_shift_scale=1.0,
            steps_offset=0,
            timestep_spacing="trailing",
        )
        parts = {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "scheduler": scheduler}
        return Pipelines(
            i2v=CogVideoXImageToVideoPipeline(transformer=i2v_transformer, **parts),
            t2v=CogVideoXPipeline(transformer=t2v_transformer, **parts),
        )

    def rules(self, pipelines: Pipelines) -> ModelFamily:
        rules = super().rules(pipelines)
        if pipelines.main.transformer.config.patch_size_t is not None:
            return rules
        # CogVideoX 1.0 (2B, 5B): trained on 49 frames at 8 fps, 720x480.
        return dataclasses.replace(rules, frame_step=4, min_frames=49, max_frames=49, fps=8, min_side=480, max_side=720)

    def call(
        self, pipelines: Pipelines, spec: RenderSpec, prepared: object, on_step: StepHook, generator: torch.Generator
    ) -> NDArray[np.float32]:
        pipeline = pipelines.for_kind(prepared)
        image: dict[str, Any] = {} if prepared is None else {"image": prepared}
        dynamic = isinstance(pipeline.scheduler, CogVideoXDPMScheduler)
        return pipeline_call(pipeline, spec, on_step, generator, use_dynamic_cfg=dynamic, **image)
