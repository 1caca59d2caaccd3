"""Wan 2.1 / 2.2: `WanPipeline` (text-to-video) and `WanImageToVideoPipeline`. A Wan 2.2 TI2V-5B folder
(`expand_timesteps`: the first latent frame carries the image at timestep 0) serves both from one set of weights; a
Wan 2.1 (or 2.2 A14B) folder serves the kind its pipeline class names: its I2V transformer takes image latents and
a CLIP image embedding that text-to-video lacks, and its T2V transformer takes neither.

Classifier-free guidance runs as two transformer calls (cond, then uncond). The pipelines take `image` as a PIL image
at the request's size; `WanImageToVideoPipeline` needs `ftfy` installed (a runtime dependency of vidgen)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKLWan,
    DiffusionPipeline,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from numpy.typing import NDArray
from transformers import UMT5Config, UMT5EncoderModel

from consumer.core.model_families import WAN, ModelFamily
from consumer.memory.coefficients import WAN_ACTIVATIONS
from consumer.render.families.base import FamilyAdapter, Pipelines, StepHook, pipeline_call, served_kinds
from consumer.render.families.tiny_text import seeded, t5_config, t5_tokenizer
from consumer.render.render_spec import RenderSpec

__all__ = ["WanAdapter"]

_TI2V_MAX_FRAMES = 121  # TI2V-5B: 5 s at 24 fps
_MAX_FRAMES = 81  # Wan 2.1 and 2.2 A14B: 5 s at 16 fps


class WanAdapter(FamilyAdapter):
    family = WAN
    pipeline_classes = frozenset({"WanPipeline", "WanImageToVideoPipeline"})
    default_model_id = "wan-2"
    activations = WAN_ACTIVATIONS

    def load(self, source: str, dtype: torch.dtype, pipeline_class: str) -> Pipelines:
        main = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype)
        return _with_sibling(main)

    def tiny(self) -> Pipelines:
        """Wan 2.2 TI2V-5B's layout: one transformer with 48 latent channels in and out, no image encoder, a VAE that
        compresses 16x (size multiple 16 x patch 2 = 32), UniPC with flow sigmas (shift 5)."""
        tokenizer = t5_tokenizer()
        with seeded(0) as make:
            text_encoder = make(lambda: UMT5EncoderModel(UMT5Config(**t5_config(len(tokenizer)))))
            vae = make(
                lambda: AutoencoderKLWan(
                    base_dim=3,
                    z_dim=48,
                    in_channels=12,
                    out_channels=12,
                    is_residual=True,
                    patch_size=2,
                    latents_mean=[0.0] * 48,
                    latents_std=[1.0] * 48,
                    dim_mult=[1, 1, 1, 1],
                    num_res_blocks=1,
                    scale_factor_spatial=16,
                    scale_factor_temporal=4,
                    temperal_downsample=[False, True, True],
                )
            )
            transformer = make(
                lambda: WanTransformer3DModel(
                    patch_size=(1, 2, 2),
                    num_attention_heads=2,
                    attention_head_dim=12,
                    in_channels=48,
                    out_channels=48,
                    text_dim=text_encoder.config.d_model,
                    freq_dim=256,
                    ffn_dim=32,
                    num_layers=2,
                    cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads",
                    rope_max_seq_len=32,
                )
            )
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
        parts = {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "scheduler": scheduler}
        return _with_sibling(WanPipeline(**parts, transformer=transformer, expand_timesteps=True))

    def rules(self, pipelines: Pipelines) -> ModelFamily:
        main = pipelines.main
        ti2v = bool(main.config.get("expand_timesteps", False))
        return served_kinds(
            self.family,
            pipelines,
            size_multiple=main.vae_scale_factor_spatial * main.transformer.config.patch_size[1],
            max_frames=_TI2V_MAX_FRAMES if ti2v else _MAX_FRAMES,
            fps=24 if ti2v else 16,
        )

    def call(
        self, pipelines: Pipelines, spec: RenderSpec, prepared: object, on_step: StepHook, generator: torch.Generator
    ) -> NDArray[np.float32]:
        pipeline = pipelines.for_kind(prepared)
        image: dict[str, Any] = {} if prepared is None else {"image": prepared}
        return pipeline_call(pipeline, spec, on_step, generator, **image)


def _with_sibling(main: Any) -> Pipelines:
    """The folder's pipeline, and for TI2V (`expand_timesteps`) the other kind on the same components."""
    ti2v = bool(main.config.get("expand_timesteps", False))
    shared = {name: main.components[name] for name in ("tokenizer", "text_encoder", "vae", "scheduler", "transformer")}
    if isinstance(main, WanImageToVideoPipeline):
        return Pipelines(i2v=main, t2v=WanPipeline(**shared, expand_timesteps=True) if ti2v else None)
    return Pipelines(i2v=WanImageToVideoPipeline(**shared, expand_timesteps=True) if ti2v else None, t2v=main)
