"""What a pipeline weighs and the shape facts the estimator needs. Pure.

`consumer/render/module_sizes.py` measures a loaded pipeline into a `ModelMemoryProfile` (parameters and buffers,
numel x element size, per component), so the tiny model and any checkpoint get exact weight bytes.
The family's measured activation coefficients ride along (`consumer/memory/coefficients.py`).
`EASYANIMATE_V51_7B` is the same computation done ahead of time for the published V5.1-7B InP configs (tests rebuild
the modules on the meta device and check these numbers), so a worker can estimate before the 30 GB of weights are
downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.memory.coefficients import EASYANIMATE_ACTIVATIONS, ActivationCoefficients

__all__ = [
    "EASYANIMATE_V51_7B",
    "TEXT_TOKENS",
    "V51_7B_INP_TRANSFORMER_CONFIG",
    "V51_VAE_CONFIG",
    "ModelMemoryProfile",
    "text_activation_bytes",
]

# The inpaint pipeline pads every prompt to `max_sequence_length` (default 256) tokens.
TEXT_TOKENS = 256


@dataclass(frozen=True)
class ModelMemoryProfile:
    """Weights in bytes per component plus the dimensions activations scale with."""

    name: str
    transformer_bytes: int
    text_encoder_bytes: int
    vae_bytes: int
    largest_layer_bytes: int  # the biggest module with weights of its own: what sequential offload holds at once
    hidden_size: int  # transformer width (heads x head dim)
    patch_size: int
    activation_bytes: int  # element size of activations (2 for bf16/fp16, 4 for fp32)
    vae_channels: int  # VAE block_out_channels[0]: the width of its full-resolution layers
    vae_tile: int = 512  # AutoencoderKLMagvit.tile_sample_min_height/width
    spatial_compression: int = 8
    temporal_compression: int = 4
    text_tokens: int = TEXT_TOKENS
    text_activation_bytes: int = 0  # one prompt through the text encoder (logits and hidden states)
    step_cache: bool = False  # step caching hooked in: tensors carried between denoising steps
    patch_size_t: int = 1  # latent frames per token (CogVideoX 1.5: 2, the latent frames padded to a multiple)
    activations: ActivationCoefficients = EASYANIMATE_ACTIVATIONS  # the family's measured coefficients

    @property
    def weights_bytes(self) -> int:
        return self.transformer_bytes + self.text_encoder_bytes + self.vae_bytes


def text_activation_bytes(
    *,
    hidden_size: int,
    intermediate_size: int,
    num_layers: int,
    vocab_size: int,
    element: int,
    tokens: int = TEXT_TOKENS,
) -> int:
    """One padded prompt of `tokens`: fp32 logits (where an LM head runs: `vocab_size` > 0), every layer's hidden
    state kept, one MLP in flight."""
    per_token = vocab_size * 4 + (num_layers + 1) * hidden_size * element + 3 * intermediate_size * element
    return tokens * per_token


# EasyAnimateTransformer3DModel kwargs of V5.1-7B from the hub transformer/config.json of the 7B V5.1 repos (read
# from EasyAnimateV5.1-7b-zh-Control, same backbone): 36 layers of which the first 18 are MMDiT, 48 heads x 64 =
# 3072 wide. Not 48 layers: that is the 12B model (~11.8B params). in_channels 33 = 16 latent + 1 mask + 16
# masked-video latents for InP (the Control repo has 48); the InP repo's own config.json was not at hand to check.
V51_7B_INP_TRANSFORMER_CONFIG: dict[str, object] = {
    "num_attention_heads": 48,
    "attention_head_dim": 64,
    "in_channels": 33,
    "out_channels": 16,
    "patch_size": 2,
    "sample_width": 90,
    "sample_height": 60,
    "num_layers": 36,
    "mmdit_layers": 18,
    "time_embed_dim": 512,
    "text_embed_dim": 3584,
    "add_norm_text_encoder": True,
    "after_norm": False,
    "activation_fn": "gelu-approximate",
    "timestep_activation_fn": "silu",
    "norm_eps": 1e-5,
    "norm_elementwise_affine": True,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_position_encoding_type": "3d_rope",
    "resize_inpaint_mask_directly": True,
    "enable_text_attention_mask": True,
    "add_noise_in_inpaint_model": True,
}
# AutoencoderKLMagvit kwargs from the hub vae/config.json (the same in every V5.1 repo). That file also carries
# cache_mag_vae=True, which a VAE built from these kwargs needs via register_to_config.
V51_VAE_CONFIG: dict[str, object] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 16,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
    "up_block_types": ("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
    "layers_per_block": 2,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "scaling_factor": 0.7125,
    "spatial_group_norm": True,
}

# EasyAnimate V5.1-7B InP in bf16. Parameter counts from instantiating the configs above on the meta device
# (tests/test_memory.py does it again and compares): transformer 6,814,670,912; VAE 244,375,507; text encoder
# Qwen2-VL-7B (Qwen2VLForConditionalGeneration with its vision tower and untied LM head) 8,291,375,616, the
# published count. The largest single layer is Qwen2-VL's token embedding (as big as its LM head), 152064 x 3584.
EASYANIMATE_V51_7B = ModelMemoryProfile(
    name="easyanimate-v5.1-7b-inp-bf16",
    transformer_bytes=6_814_670_912 * 2,
    text_encoder_bytes=8_291_375_616 * 2,
    vae_bytes=244_375_507 * 2,
    largest_layer_bytes=152_064 * 3_584 * 2,
    hidden_size=48 * 64,
    patch_size=2,
    activation_bytes=2,
    vae_channels=128,
    text_activation_bytes=text_activation_bytes(
        hidden_size=3_584, intermediate_size=18_944, num_layers=28, vocab_size=152_064, element=2
    ),
)
