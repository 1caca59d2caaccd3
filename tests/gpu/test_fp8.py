"""FP8 matmuls on a real GPU: bounded drift from the exact bf16 path (refusals: tests/unit/test_fp8.py)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from consumer.render.fp8 import fp8_unsupported_reason
from consumer.render.loader import load_pipeline
from consumer.render.render_spec import RenderSpec

CUDA = torch.device("cuda")
SPEC = RenderSpec(
    prompt="a red shoe", negative_prompt="", width=256, height=256, num_frames=5, steps=10, guidance_scale=5.0, seed=3
)


async def test_fp8_renders_close_to_the_exact_bf16_path(make_renderer: Callable) -> None:
    pytest.importorskip("torchao", reason="the `fp8` extra is not installed")
    if fp8_unsupported_reason(CUDA, torch.cuda.get_device_capability(), torch.bfloat16, torchao_installed=True):
        pytest.skip("this GPU has no FP8 tensor cores (compute capability < 8.9)")
    quantized = load_pipeline("tiny", device=CUDA, dtype=torch.bfloat16, fp8=True)
    linears = [m for m in quantized.transformer.transformer_blocks.modules() if isinstance(m, torch.nn.Linear)]
    assert "Float8Tensor" in {type(m.weight).__name__ for m in linears}  # the blocks really multiply in float8
    frames = []
    for renderer in (make_renderer(load_pipeline("tiny", device=CUDA, dtype=torch.bfloat16)), make_renderer(quantized)):
        await renderer.start()
        frames.append((await renderer.render(SPEC, None, timeout_s=120)).frames.astype(np.float64))
    mse = float(np.mean((frames[0] - frames[1]) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    assert float(np.abs(frames[0] - frames[1]).mean()) < 4.0
    assert psnr > 30
