"""What a loaded model weighs, measured from its modules: the `ModelMemoryProfile` memory estimates start from.

Any family's pipeline: its transformer(s), text and image encoders and VAE, with the shape facts read from their
configs and the pipeline (compressions, patch, VAE width), and the family's measured coefficients
(`consumer/memory/coefficients.py`) carried along."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from consumer.memory.coefficients import EASYANIMATE_ACTIVATIONS, ActivationCoefficients
from consumer.memory.profile import ModelMemoryProfile, text_activation_bytes
from consumer.render.families.base import LoadedModel
from consumer.render.step_cache import has_step_cache

__all__ = ["module_bytes", "profile_model", "profile_pipeline"]

_TRANSFORMERS = ("transformer", "transformer_2")  # Wan 2.2 A14B: two experts, both held
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_ENCODERS = (*_TEXT_ENCODERS, "image_encoder")


def profile_model(model: LoadedModel, *, name: str = "loaded") -> ModelMemoryProfile:
    """Profile of a loaded model: its main pipeline plus any module only a sibling pipeline has (a text-to-video
    transformer of its own)."""
    main = model.pipeline
    own = {id(module) for module in _modules(main)}
    extra = [m for p in model.pipelines.each()[1:] for m in _modules(p) if id(m) not in own]
    return profile_pipeline(main, name=name, activations=model.adapter.activations, extra=extra)


def profile_pipeline(
    pipeline: Any,
    *,
    name: str = "loaded",
    activations: ActivationCoefficients = EASYANIMATE_ACTIVATIONS,
    extra: Iterable[torch.nn.Module] = (),
) -> ModelMemoryProfile:
    """Profile of a pipeline as loaded (any dtype, on any device, even offloaded to meta). `extra`: transformers
    of sibling pipelines, counted with the transformer."""
    transformer, vae = pipeline.transformer, pipeline.vae
    transformers = [*_present(pipeline, _TRANSFORMERS), *extra]
    encoders = list(_present(pipeline, _ENCODERS))
    config = transformer.config
    patch = config.patch_size
    spatial_patch, temporal_patch = (patch[-1], patch[0]) if isinstance(patch, list | tuple) else (patch, 1)
    return ModelMemoryProfile(
        name=name,
        transformer_bytes=sum(module_bytes(m) for m in transformers),
        # No text encoder when prompts arrive as precomputed embeddings (the benchmark does that).
        text_encoder_bytes=sum(module_bytes(m) for m in encoders),
        vae_bytes=module_bytes(vae),
        largest_layer_bytes=max(_largest_layer_bytes(m) for m in (*transformers, *encoders, vae)),
        hidden_size=config.num_attention_heads * config.attention_head_dim,
        patch_size=spatial_patch,
        patch_size_t=getattr(config, "patch_size_t", None) or temporal_patch,
        activation_bytes=_element_size(transformer),
        vae_channels=_vae_width(vae.config),
        vae_tile=int(getattr(vae, "tile_sample_min_height", 512)),
        spatial_compression=_compression(pipeline, vae, "spatial", 8),
        temporal_compression=_compression(pipeline, vae, "temporal", 4),
        text_tokens=activations.joint_tokens,
        text_activation_bytes=sum(
            _text_activation_bytes(m, activations.prompt_tokens) for m in _present(pipeline, _TEXT_ENCODERS)
        ),
        step_cache=any(has_step_cache(m) for m in transformers),
        activations=activations,
    )


def module_bytes(module: torch.nn.Module) -> int:
    """Parameters and buffers, numel x element size (works on meta tensors too)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _modules(pipeline: Any) -> list[torch.nn.Module]:
    return [c for c in pipeline.components.values() if isinstance(c, torch.nn.Module)]


def _present(pipeline: Any, names: tuple[str, ...]) -> Iterable[torch.nn.Module]:
    for name in names:
        module = getattr(pipeline, name, None)
        if isinstance(module, torch.nn.Module):
            yield module


def _compression(pipeline: Any, vae: Any, axis: str, default: int) -> int:
    """The VAE's compression along `axis`, as the pipeline uses it (its attribute names differ by family)."""
    for holder, attribute in (
        (pipeline, f"vae_scale_factor_{axis}"),
        (pipeline, f"vae_{axis}_compression_ratio"),
        (vae, f"{axis}_compression_ratio"),
    ):
        value = getattr(holder, attribute, None)
        if isinstance(value, int):
            return value
    return default


def _vae_width(config: Any) -> int:
    """The width of the VAE's full-resolution layers: block_out_channels[0], or Wan's base_dim x dim_mult[0]."""
    blocks = getattr(config, "block_out_channels", None)
    if blocks:
        return int(blocks[0])
    return int(config.base_dim * config.dim_mult[0])


def _text_activation_bytes(encoder: Any, tokens: int) -> int:
    # Qwen2-VL nests the language model's dimensions under text_config; T5 names them d_model, d_ff, num_layers.
    config = getattr(encoder.config, "text_config", None) or encoder.config
    return text_activation_bytes(
        hidden_size=getattr(config, "hidden_size", None) or config.d_model,
        intermediate_size=getattr(config, "intermediate_size", None) or config.d_ff,
        num_layers=getattr(config, "num_hidden_layers", None) or config.num_layers,
        vocab_size=config.vocab_size if hasattr(encoder, "lm_head") else 0,  # logits only where the LM head runs
        element=_element_size(encoder),
        tokens=tokens,
    )


def _largest_layer_bytes(module: torch.nn.Module) -> int:
    # accelerate's sequential offload hooks every module that owns parameters directly and loads one at a time.
    sizes = (sum(p.numel() * p.element_size() for p in m.parameters(recurse=False)) for m in module.modules())
    return max(sizes, default=0)


def _element_size(module: Any) -> int:
    dtype: torch.dtype = module.dtype
    return dtype.itemsize
