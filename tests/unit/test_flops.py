"""The FLOP count used for TFLOP/s figures agrees with PyTorch's own counter on a real transformer forward."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from consumer.render.flops import peak_tflops, step_flops, transformer_step_flops
from consumer.render.tiny import build_tiny_pipeline

pytestmark = pytest.mark.torch  # loads torch, which the unit tier allows only where declared


def test_count_matches_torch_flop_counter_on_the_tiny_transformer() -> None:
    transformer = build_tiny_pipeline().transformer
    width = height = 256
    frames, text_tokens = 9, 12
    latent = torch.randn(2, 4, 3, height // 8, width // 8)  # batch 2: CFG; 9 frames -> 3 latent frames
    inpaint = torch.randn(2, 5, 3, height // 8, width // 8)
    text = torch.randn(2, text_tokens, transformer.config.text_embed_dim)
    # The math backend runs attention as matmuls the counter sees (the fused CPU kernel is not counted).
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        transformer(latent, torch.tensor([500.0, 500.0]), encoder_hidden_states=text, inpaint_latents=inpaint)
    ours = transformer_step_flops(
        transformer, width=width, height=height, num_frames=frames, guidance_scale=5.0, text_tokens=text_tokens
    )
    measured = counter.get_total_flops()
    assert 0.9 < ours / measured < 1.1, (ours, measured)


def test_guidance_doubles_and_attention_grows_quadratically() -> None:
    base = {"layers": 2, "hidden": 64, "width": 512, "height": 512}
    one = step_flops(**base, num_frames=25, guidance_scale=1.0)
    assert step_flops(**base, num_frames=25, guidance_scale=5.0) == 2 * one
    longer = step_flops(**base, num_frames=49, guidance_scale=1.0)
    assert longer > 1.8 * one  # 13 latent frames instead of 7, and attention is quadratic in tokens


def test_peaks_by_device_name() -> None:
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops("cpu") is None
