"""What a loaded pipeline weighs, measured from its modules: the `ModelMemoryProfile` memory estimates start from."""

from __future__ import annotations

from typing import Any

import torch

from consumer.memory.profile import ModelMemoryProfile, text_activation_bytes
from consumer.render.step_cache import step_cache_stats

__all__ = ["module_bytes", "profile_pipeline"]


def profile_pipeline(pipeline: Any, *, name: str = "loaded") -> ModelMemoryProfile:
    """Profile of an EasyAnimate pipeline as loaded (any dtype, on any device, even offloaded to meta)."""
    transformer, vae, text_encoder = pipeline.transformer, pipeline.vae, pipeline.text_encoder
    config = transformer.config
    modules = [m for m in (transformer, vae, text_encoder) if m is not None]
    return ModelMemoryProfile(
        name=name,
        transformer_bytes=module_bytes(transformer),
        # None when prompts arrive as precomputed embeddings (the benchmark does that).
        text_encoder_bytes=module_bytes(text_encoder) if text_encoder is not None else 0,
        vae_bytes=module_bytes(vae),
        largest_layer_bytes=max(_largest_layer_bytes(m) for m in modules),
        hidden_size=config.num_attention_heads * config.attention_head_dim,
        patch_size=config.patch_size,
        activation_bytes=_element_size(transformer),
        vae_channels=vae.config.block_out_channels[0],
        vae_tile=int(getattr(vae, "tile_sample_min_height", 512)),
        spatial_compression=int(getattr(vae, "spatial_compression_ratio", 8)),
        temporal_compression=int(getattr(vae, "temporal_compression_ratio", 4)),
        text_activation_bytes=_text_activation_bytes(text_encoder),
        step_cache=step_cache_stats(pipeline) is not None,
    )


def module_bytes(module: torch.nn.Module) -> int:
    """Parameters and buffers, numel x element size (works on meta tensors too)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _text_activation_bytes(text_encoder: Any) -> int:
    if text_encoder is None:
        return 0
    # Qwen2-VL nests the language model's dimensions under text_config; plain decoders keep them at the top.
    text = getattr(text_encoder.config, "text_config", None) or text_encoder.config
    return text_activation_bytes(
        hidden_size=text.hidden_size,
        intermediate_size=text.intermediate_size,
        num_layers=text.num_hidden_layers,
        vocab_size=text.vocab_size,
        element=_element_size(text_encoder),
    )


def _largest_layer_bytes(module: torch.nn.Module) -> int:
    # accelerate's sequential offload hooks every module that owns parameters directly and loads one at a time.
    sizes = (sum(p.numel() * p.element_size() for p in m.parameters(recurse=False)) for m in module.modules())
    return max(sizes, default=0)


def _element_size(module: Any) -> int:
    dtype: torch.dtype = module.dtype
    return dtype.itemsize
