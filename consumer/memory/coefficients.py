"""The measured coefficients of the memory estimate (`consumer/memory/estimate.py`), one set per model family. Pure.

Each is bytes per unit of what activations scale with, measured with torch.profiler's CPU allocation timeline
(diffusers 0.42.1, torch 2.13) on the family's own blocks and VAE: `bench/family_memory.py` prints them. A family's
adapter (`consumer/render/families/`) hands its set to the profile of the model it loaded.

    dit           one transformer block's peak per latent token, per hidden unit, per element byte
    cfg_batched   classifier-free guidance as one batch of two (EasyAnimate, LTX-Video, CogVideoX), or as two calls
                  of one (Wan, HunyuanVideo-1.5: the uncond pass starts after the cond pass freed its activations)
    joint_text    the prompt's tokens join the sequence (MM-DiT: EasyAnimate, HunyuanVideo-1.5, CogVideoX); else
                  they are only cross-attention keys and values (Wan, LTX-Video), small beside the video tokens
    vae_decode    the VAE decode's peak per VAE width, per frame it decodes at once, per pixel, per element byte
    vae_encode    the same for encoding the start image (or start video)
    decode_chunk  latent frames the VAE decodes at once (None: the whole clip in one pass)
    frame_buffer  bytes per pixel per frame held through the whole render (preprocessed inputs, the output frames)
    prompt_tokens tokens the text encoder(s) run on, whatever the prompt (pipelines pad to a fixed length)
    joint_tokens  tokens joining the video tokens in the transformer's sequence (prompt, glyph and image tokens)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COGVIDEOX_ACTIVATIONS",
    "EASYANIMATE_ACTIVATIONS",
    "HUNYUANVIDEO15_ACTIVATIONS",
    "LTX_ACTIVATIONS",
    "WAN_ACTIVATIONS",
    "ActivationCoefficients",
]


@dataclass(frozen=True)
class ActivationCoefficients:
    dit: float
    cfg_batched: bool
    joint_text: bool
    vae_decode: float
    vae_encode: float
    decode_chunk: int | None
    frame_buffer: int
    prompt_tokens: int
    joint_tokens: int


# EasyAnimate V5.1: the transformer at D = 512 and 1024 (12.7-13.1 in fp32 and bf16), the full-size MagVIT VAE with
# random weights at 64-192 px (decode 21.3, encode 11.6), the whole tiny pipeline for the frame buffers (41-46 B).
EASYANIMATE_ACTIVATIONS = ActivationCoefficients(
    dit=13.0,
    cfg_batched=True,
    joint_text=True,
    vae_decode=21.5,
    vae_encode=12.0,
    decode_chunk=1,
    frame_buffer=48,
    prompt_tokens=256,
    joint_tokens=256,
)
WAN_ACTIVATIONS = ActivationCoefficients(
    dit=13.0,
    cfg_batched=False,
    joint_text=False,
    vae_decode=21.5,
    vae_encode=12.0,
    decode_chunk=1,
    frame_buffer=48,
    prompt_tokens=512,
    joint_tokens=0,
)
LTX_ACTIVATIONS = ActivationCoefficients(
    dit=13.0,
    cfg_batched=True,
    joint_text=False,
    vae_decode=21.5,
    vae_encode=12.0,
    decode_chunk=None,
    frame_buffer=48,
    prompt_tokens=128,
    joint_tokens=0,
)
HUNYUANVIDEO15_ACTIVATIONS = ActivationCoefficients(
    dit=13.0,
    cfg_batched=False,
    joint_text=True,
    vae_decode=21.5,
    vae_encode=12.0,
    decode_chunk=1,
    frame_buffer=48,
    prompt_tokens=1108,  # Qwen2.5-VL: 1000 prompt tokens plus its 108-token template
    joint_tokens=1985,  # 1000 prompt + 256 ByT5 glyph + 729 SigLIP image tokens
)
COGVIDEOX_ACTIVATIONS = ActivationCoefficients(
    dit=13.0,
    cfg_batched=True,
    joint_text=True,
    vae_decode=21.5,
    vae_encode=12.0,
    decode_chunk=2,
    frame_buffer=48,
    prompt_tokens=226,
    joint_tokens=226,
)
