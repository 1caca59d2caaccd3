"""Each new family's full-size model with random weights (speed and memory do not depend on weight values), for the
GPU benchmarks: the published component configs in `bench/configs/<checkpoint>/<component>.json` (each names its class
and where its numbers come from) built straight on the device, wired into the family's own pipeline classes by
rebuilding the tiny model's pipelines around them (tokenizers, schedulers and pipeline options stay the tiny
model's: the tiny tokenizers pad to the same prompt lengths, so the text encoders do the same work).

Where the image-to-video and text-to-video pipelines of a family have transformers of their own (HunyuanVideo-1.5,
CogVideoX), the full-size model is the image-to-video checkpoint alone, the product's case. EasyAnimate's full-size
model is `bench.render_harness.build_full_pipeline`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers

from consumer.render.families.base import LoadedModel, Pipelines
from consumer.render.families.registry import adapter_named

__all__ = ["CHECKPOINTS", "build_component", "components", "full_model", "parameter_counts"]

CONFIGS = Path(__file__).with_name("configs")
CHECKPOINTS = {  # family -> the checkpoint whose configs bench/configs holds
    "wan": "wan22_ti2v_5b",
    "ltx": "ltx_2b_095",
    "hunyuanvideo15": "hunyuanvideo15_480p_i2v",
    "cogvideox": "cogvideox15_5b_i2v",
}


def components(family: str) -> dict[str, dict[str, Any]]:
    """The family's full-size component entries by pipeline component name."""
    folder = CONFIGS / CHECKPOINTS[family]
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))}


def build_component(entry: dict[str, Any], device: torch.device | str) -> torch.nn.Module:
    """One component with random weights on `device` (`meta`: shapes only, no memory)."""
    package, name = entry["class"].split(".", 1)
    cls = getattr(diffusers if package == "diffusers" else transformers, name)
    with torch.device(device):
        if package == "transformers":
            module: torch.nn.Module = cls(cls.config_class(**entry["config"]))
        else:
            module = cls(**entry["config"])
    return module


def parameter_counts(family: str) -> dict[str, int]:
    """Parameters per component, built on the meta device."""
    return {
        name: sum(p.numel() for p in build_component(entry, "meta").parameters())
        for name, entry in components(family).items()
    }


def full_model(family: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The family's full-size model on `device` in `dtype`, as the loader would hand it to the renderer."""
    adapter = adapter_named(family)
    tiny = adapter.tiny()
    torch.manual_seed(0)
    replaced = {name: _cast(build_component(entry, device), dtype) for name, entry in components(family).items()}
    if "image_encoder" in replaced:  # the encoder's own input size (SigLIP 384 px for HunyuanVideo-1.5)
        size = replaced["image_encoder"].config.image_size
        replaced["feature_extractor"] = type(tiny.main.feature_extractor)(size={"height": size, "width": size})
    shared = len(tiny.transformers()) == 1
    i2v = _rebuilt(tiny.i2v, replaced) if tiny.i2v is not None else None
    t2v = None if not shared or tiny.t2v is None else i2v if tiny.t2v is tiny.i2v else _rebuilt(tiny.t2v, replaced)
    pipelines = Pipelines(i2v=i2v, t2v=t2v)
    for pipeline in pipelines.each():
        pipeline.to(device)  # the tiny parts left (schedulers' tensors, small buffers)
        pipeline.set_progress_bar_config(disable=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return LoadedModel(adapter, pipelines, adapter.rules(pipelines), model_id=adapter.default_model_id)


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`module` in `dtype` but for the submodules its class keeps in float32 (as `from_pretrained` loads them)."""
    module.to(dtype)
    keep = getattr(module, "_keep_in_fp32_modules", None) or []
    for name, submodule in module.named_modules():
        if any(kept in name for kept in keep):
            submodule.float()
    return module


def _rebuilt(pipeline: Any, replaced: dict[str, Any]) -> Any:
    """`pipeline`'s class built again with the `replaced` components (its constructor derives scale factors and
    token lengths from them) and the options it was built with."""
    expected, optional = _signature_keys(type(pipeline))
    kwargs = {name: replaced.get(name, getattr(pipeline, name, None)) for name in expected}
    kwargs |= {name: pipeline.config[name] for name in optional if name in pipeline.config}
    return type(pipeline)(**kwargs)


@functools.cache
def _signature_keys(cls: type) -> tuple[set[str], set[str]]:
    expected, optional = cls._get_signature_keys(cls)  # type: ignore[attr-defined]
    return set(expected), set(optional)
