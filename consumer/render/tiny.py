"""The built-in `tiny` model: the real EasyAnimate inpaint pipeline with tiny random weights, built offline.

Same classes as a V5.1 InP checkpoint (Qwen2-VL text encoder, MagVIT VAE, EasyAnimate transformer), so every code
path the real model takes runs in tests and the demo in about a second per video.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLMagvit,
    EasyAnimateInpaintPipeline,
    EasyAnimateTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
)
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from consumer.render.families.tiny_text import QWEN_EOS, qwen2_tokenizer

__all__ = ["TINY_SEED", "build_tiny_pipeline"]

TINY_SEED = 0
_TEXT_DIM = 16
_LATENT_CHANNELS = 4


def build_tiny_pipeline() -> EasyAnimateInpaintPipeline:
    """Deterministic: the same weights on every call and every machine."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(TINY_SEED)
    try:
        tokenizer = qwen2_tokenizer()
        transformer = EasyAnimateTransformer3DModel(
            num_attention_heads=2,
            attention_head_dim=16,
            # Like real InP checkpoints: latents + mask + masked-video latents (diffusers issue #12646).
            in_channels=2 * _LATENT_CHANNELS + 1,
            out_channels=_LATENT_CHANNELS,
            time_embed_dim=2,
            text_embed_dim=_TEXT_DIM,
            num_layers=2,  # the step cache always runs the first block: one would leave it nothing to skip
            sample_width=16,
            sample_height=16,
            patch_size=2,
        )
        vae = AutoencoderKLMagvit(
            # The full-resolution blocks are the narrow ones: they dominate a render's CPU time (decode ~3.5x faster
            # than with 8 channels throughout).
            block_out_channels=(4, 4, 8, 8),
            latent_channels=_LATENT_CHANNELS,
            layers_per_block=1,
            norm_num_groups=2,
            spatial_group_norm=False,
        )
        # Only hub config.json files carry this flag, and the inpaint pipeline reads it.
        vae.register_to_config(cache_mag_vae=True)
        eos_id = tokenizer.convert_tokens_to_ids(QWEN_EOS)
        text_config = {
            "hidden_size": _TEXT_DIM,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "vocab_size": len(tokenizer),
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "bos_token_id": eos_id,
            "eos_token_id": eos_id,
        }
        vision_config = {"depth": 1, "embed_dim": 16, "hidden_size": 16, "num_heads": 2, "patch_size": 14}
        text_encoder = Qwen2VLForConditionalGeneration(
            Qwen2VLConfig(text_config=text_config, vision_config=vision_config, vocab_size=len(tokenizer))
        )
        return EasyAnimateInpaintPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(),
        )
    finally:
        torch.random.set_rng_state(generator_state)
