"""Load the EasyAnimate V5.1 inpaint pipeline from `tiny`, a local diffusers folder, or a Hugging Face id; or one of
the pipelines without weights: `template` (consumer/render/template.py) and `standin` (benchmarks, fault tests)."""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import EasyAnimateInpaintPipeline

from consumer.errors import ModelUnavailable
from consumer.render.fp8 import check_fp8, quantize_fp8
from consumer.render.standin import StandInPipeline
from consumer.render.step_cache import apply_step_cache
from consumer.render.template import TemplatePipeline
from consumer.render.tiny import build_tiny_pipeline

__all__ = ["load_pipeline", "resolve_device", "resolve_dtype"]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_NO_WEIGHTS = ("standin", "template")  # no transformer: FP8, step caching and compilation do not apply


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


def load_pipeline(
    model: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    standin_render_s: float = 1.0,
    compile_backend: str | None = None,
    step_cache_threshold: float = 0.0,
    fp8: bool = False,
) -> Any:
    """Build or load the pipeline and move it to the device. Slow: call it from a worker thread.

    `step_cache_threshold` > 0 turns on step caching (consumer/render/step_cache.py) and `fp8` FP8 matmuls
    (consumer/render/fp8.py); both change the output. FP8 is checked against the device before anything loads."""
    weights = model not in _NO_WEIGHTS
    if fp8 and weights:
        check_fp8(device, dtype)
    if model == "standin":
        pipeline: Any = StandInPipeline(standin_render_s)
    elif model == "template":
        pipeline = TemplatePipeline()
    elif model == "tiny":
        pipeline = build_tiny_pipeline()  # float32, like any CPU render
        if dtype != torch.float32:
            pipeline = pipeline.to(dtype=dtype)
    else:
        try:
            pipeline = EasyAnimateInpaintPipeline.from_pretrained(model, torch_dtype=dtype)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailable(
                f"cannot load EasyAnimate V5.1 InP pipeline from {model!r}: {exc}. Expected a diffusers folder "
                "(model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/) or a Hugging Face "
                "id such as alibaba-pai/EasyAnimateV5.1-7b-zh-InP-diffusers"
            ) from exc
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    if fp8 and weights:
        quantize_fp8(pipeline.transformer)
    if step_cache_threshold > 0 and weights:
        apply_step_cache(pipeline, step_cache_threshold)
    if compile_backend is not None and weights:
        # Compiled lazily on the first call per input shape: the renderer's warm-up pays that before requests.
        pipeline.transformer = torch.compile(pipeline.transformer, backend=compile_backend)
    log.info("model loaded", extra={"model": model, "device": str(device), "dtype": str(dtype)})
    return pipeline
