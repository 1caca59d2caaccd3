"""FP8 matmuls for the transformer blocks: torchao float8 dynamic activations + float8 weights, scaled per row.

Every Linear layer inside `transformer_blocks` (attention projections, feed-forwards, adaLN modulation: all of the
transformer's weight matmuls but a few small ones) multiplies in float8 e4m3 on tensor cores, with activations
quantized on the fly. Attention itself (SDPA), patch embedding, text projection and the output layers stay in
bfloat16. torchao leaves a layer whose dimensions are
not multiples of 16 as it is. Needs CUDA compute capability 8.9+ (Ada, Hopper): torchao refuses anything else,
CPUs included. Changes the output: off by default (`VIDGEN_FP8=false`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch

from consumer.errors import ModelUnavailable

__all__ = ["MIN_CAPABILITY", "check_fp8", "fp8_unsupported_reason", "quantize_fp8"]

MIN_CAPABILITY = (8, 9)


def fp8_unsupported_reason(
    device: torch.device, capability: tuple[int, int] | None, dtype: torch.dtype, *, torchao_installed: bool
) -> str | None:
    """Why FP8 cannot run here, or None when it can. `capability` is the CUDA device's (None off CUDA)."""
    if device.type != "cuda" or capability is None:
        return f"VIDGEN_FP8 needs a CUDA GPU with compute capability 8.9+ (Ada, Hopper); device is {device}"
    if capability < MIN_CAPABILITY:
        major, minor = capability
        return f"VIDGEN_FP8 needs compute capability 8.9+ (Ada, Hopper); this GPU has {major}.{minor}"
    if dtype != torch.bfloat16:
        return f"VIDGEN_FP8 scales per row, which torchao supports for bfloat16 weights only; dtype is {dtype}"
    if not torchao_installed:
        return "VIDGEN_FP8 needs torchao: install the `fp8` extra (pip install 'vidgen[fp8]')"
    return None


def check_fp8(device: torch.device, dtype: torch.dtype) -> None:
    """Raise ModelUnavailable, before any weights load, when FP8 cannot run on `device` in `dtype`."""
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    reason = fp8_unsupported_reason(
        device, capability, dtype, torchao_installed=importlib.util.find_spec("torchao") is not None
    )
    if reason is not None:
        raise ModelUnavailable(reason)


def quantize_fp8(transformer: Any) -> None:
    """Swap the block Linear weights for torchao float8 tensors in place (after the move to the device)."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(
        transformer,
        Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
        filter_fn=lambda module, name: isinstance(module, torch.nn.Linear) and name.startswith("transformer_blocks."),
    )
