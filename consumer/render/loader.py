"""Load the model a worker serves (`VIDGEN_MODEL`): a local diffusers folder (or Hugging Face id) of any supported
family, read from its `model_index.json`; a built-in tiny model (`tiny:<family>`, `tiny` = `tiny:easyanimate`); or one
of the pipelines without weights: `template` (consumer/render/template.py) and `standin` (benchmarks, fault tests).

What differs per family is its adapter's (`consumer/render/families/`); what is done to every transformer the model
has is here: FP8 matmuls, the step cache (cache-dit), compilation."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from consumer.errors import ModelUnavailable
from consumer.render.families.base import LoadedModel, Pipelines
from consumer.render.families.easyanimate import EasyAnimateAdapter
from consumer.render.fp8 import check_fp8, quantize_fp8
from consumer.render.standin import StandInPipeline
from consumer.render.step_cache import StepCache
from consumer.render.template import TemplatePipeline

__all__ = ["TINY_MIN_SIDE", "load_model", "resolve_device", "resolve_dtype"]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_NO_WEIGHTS = ("standin", "template")  # no transformer: FP8, step caching and compilation do not apply
TINY_MIN_SIDE = 64  # tiny models render from 64 px, so tests and demos stay cheap on a CPU


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("VIDGEN_DEVICE=cuda but torch sees no CUDA device")
    return torch.device(setting)


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        # bf16 keeps fp32's range (no overflow in the VAE) at half the memory; CPUs are fastest in fp32.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[setting]


def load_model(
    model: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    model_id: str | None = None,
    standin_render_s: float = 1.0,
    compile_backend: str | None = None,
    step_cache_threshold: float = 0.0,
    fp8: bool = False,
) -> LoadedModel:
    """Build or load the model and move it to the device. Slow: call it from a worker thread. `model_id` is its
    public id (None: the family's default).

    `step_cache_threshold` > 0 turns on step caching (cache-dit, consumer/render/step_cache.py) and `fp8` FP8 matmuls
    (consumer/render/fp8.py); both change the output. FP8 is checked against the device before anything loads;
    an unsupported family is refused before any weights load, naming the supported ones."""
    weights = model not in _NO_WEIGHTS
    if fp8 and weights:
        check_fp8(device, dtype)
    loaded = _build(model, dtype, standin_render_s)
    if model_id is not None:
        loaded = dataclasses.replace(loaded, model_id=model_id)
    for pipeline in loaded.pipelines.each():
        pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
    if weights:
        if fp8:
            for transformer in loaded.pipelines.transformers():
                quantize_fp8(transformer)
        if step_cache_threshold > 0:
            loaded = dataclasses.replace(
                loaded, step_cache=StepCache(loaded.pipelines.transformers(), step_cache_threshold)
            )
        if compile_backend is not None:
            _compile(loaded.pipelines, compile_backend)
    log.info(
        "model loaded",
        extra={"model": model, "model_id": loaded.model_id, "device": str(device), "dtype": str(dtype)},
    )
    return loaded


def _build(model: str, dtype: torch.dtype, standin_render_s: float) -> LoadedModel:
    if model in _NO_WEIGHTS:
        plain = StandInPipeline(standin_render_s) if model == "standin" else TemplatePipeline()
        return LoadedModel(EasyAnimateAdapter(), Pipelines(plain, plain), rules=None, model_id=model)
    # The families load diffusers and transformers (seconds of start-up): only a model with weights needs them.
    from consumer.render.families.registry import adapter_for_class, adapter_named

    if model == "tiny" or model.startswith("tiny:"):
        adapter = adapter_named(model.partition(":")[2] or "easyanimate")
        pipelines = adapter.tiny()  # float32, like any CPU render
        if dtype != torch.float32:
            pipelines = Pipelines(*(None if p is None else p.to(dtype=dtype) for p in (pipelines.i2v, pipelines.t2v)))
        rules = dataclasses.replace(adapter.rules(pipelines), min_side=TINY_MIN_SIDE)
        return LoadedModel(adapter, pipelines, rules, adapter.default_model_id)
    pipeline_class = _pipeline_class(model)
    adapter = adapter_for_class(pipeline_class)
    try:
        pipelines = adapter.load(model, dtype, pipeline_class)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelUnavailable(
            f"cannot load the {adapter.family.name} model from {model!r}: {exc}. Expected a diffusers folder "
            "(model_index.json and a folder per component) or a Hugging Face id"
        ) from exc
    return LoadedModel(adapter, pipelines, adapter.rules(pipelines), adapter.default_model_id)


def _pipeline_class(model: str) -> str:
    """The pipeline class the model's `model_index.json` names, read before any weights load."""
    from diffusers import DiffusionPipeline

    from consumer.render.families.registry import supported

    try:
        index: dict[str, Any] = DiffusionPipeline.load_config(model)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(
            f"cannot load a model from {model!r}: no readable model_index.json ({exc}). VIDGEN_MODEL takes a diffusers "
            f"folder or Hugging Face id of a supported family ({supported()}), tiny:<family>, template or standin"
        ) from exc
    name = index.get("_class_name")
    if not isinstance(name, str):
        raise ModelUnavailable(f"the model_index.json of {model!r} names no pipeline class (_class_name)")
    return name


def _compile(pipelines: Pipelines, backend: str) -> None:
    """Each distinct transformer compiled once and handed to every pipeline using it. Compiled lazily on the first
    call per input shape: the renderer's warm-up pays that before requests."""
    compiled = {id(t): torch.compile(t, backend=backend) for t in pipelines.transformers()}
    for pipeline in pipelines.each():
        pipeline.transformer = compiled[id(pipeline.transformer)]
