"""Floating-point work of one denoising step of the EasyAnimate transformer, to state achieved TFLOP/s. Pure.

Per block and token of width D (video latent patches and text tokens each go through their own stream's weights,
MMDiT style): Q, K, V and output projections (4 D^2 multiply-adds) and a 4x feed-forward (8 D^2), so 24 D^2 FLOPs;
joint attention over all N tokens adds QK^T and attention-times-V, 4 N^2 D. The adaLN modulation (once per sample),
norms, RoPE, embeddings and the scheduler are left out (about 2% at full size). Classifier-free guidance runs the
batch twice. A test checks the count against torch's FlopCounterMode on a real forward pass.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PEAK_BF16_TFLOPS", "peak_tflops", "step_flops", "transformer_step_flops"]

# Dense bf16 tensor-core peaks from the vendors' datasheets (no sparsity), by device name fragment.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


def step_flops(
    *,
    layers: int,
    hidden: int,
    width: int,
    height: int,
    num_frames: int,
    guidance_scale: float,
    patch_size: int = 2,
    text_tokens: int = 256,
    spatial_compression: int = 8,
    temporal_compression: int = 4,
) -> int:
    latent_frames = (num_frames - 1) // temporal_compression + 1
    side = spatial_compression * patch_size
    tokens = latent_frames * (height // side) * (width // side) + text_tokens
    batch = 2 if guidance_scale > 1 else 1
    return batch * layers * (24 * hidden * hidden * tokens + 4 * tokens * tokens * hidden)


def transformer_step_flops(
    transformer: Any, *, width: int, height: int, num_frames: int, guidance_scale: float, text_tokens: int = 256
) -> int:
    """The count for a loaded EasyAnimateTransformer3DModel, from its own config and parameter count."""
    config = transformer.config
    return step_flops(
        layers=config.num_layers,
        hidden=config.num_attention_heads * config.attention_head_dim,
        width=width,
        height=height,
        num_frames=num_frames,
        guidance_scale=guidance_scale,
        patch_size=config.patch_size,
        text_tokens=text_tokens,
    )


def peak_tflops(device_name: str) -> float | None:
    return next((peak for fragment, peak in PEAK_BF16_TFLOPS.items() if fragment in device_name), None)
