"""What the render benchmarks share: the full-size EasyAnimate V5.1-7B InP pipeline built from its published configs
with random weights (no text encoder: random prompt embeddings of its output shape instead), one render on a fixed
seed, and seconds and peak memory of a call (CUDA's allocator peak, or on a CPU the torch allocator's high-water mark
replayed from the profiler's memory events). Used by `bench.render_modes`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    AutoencoderKLMagvit,
    EasyAnimateInpaintPipeline,
    EasyAnimateTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import get_image_to_video_latent
from PIL import Image

from consumer.memory.profile import V51_7B_INP_TRANSFORMER_CONFIG, V51_VAE_CONFIG

__all__ = ["GUIDANCE", "TEXT_SHAPE", "build_full_pipeline", "cpu_peak_bytes", "measure", "prompt_kwargs", "render"]

TEXT_SHAPE = (1, 256, 3584)  # Qwen2-VL-7B hidden states for one prompt padded to 256 tokens
GUIDANCE = 6.0  # upstream default: CFG on, batch 2 through the transformer


def build_full_pipeline(device: torch.device, dtype: torch.dtype) -> EasyAnimateInpaintPipeline:
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds; 27 GB of fp32 on a CPU would take minutes
        transformer = EasyAnimateTransformer3DModel(**V51_7B_INP_TRANSFORMER_CONFIG).to(dtype)
        vae = AutoencoderKLMagvit(**V51_VAE_CONFIG).to(dtype)
    vae.register_to_config(cache_mag_vae=True)  # only hub config.json files carry it; the pipeline reads it
    pipeline = EasyAnimateInpaintPipeline(
        vae=vae, text_encoder=None, tokenizer=None, transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler()
    )
    pipeline.set_progress_bar_config(disable=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return pipeline


def prompt_kwargs(pipeline: Any, device: torch.device, *, tiny: bool) -> dict[str, Any]:
    if tiny:
        return {"prompt": "a red sneaker on a white table", "negative_prompt": ""}
    generator = torch.Generator(device="cpu").manual_seed(1)
    embeds = [torch.randn(TEXT_SHAPE, generator=generator).to(device, pipeline.transformer.dtype) for _ in range(2)]
    mask = torch.ones(TEXT_SHAPE[:2], dtype=torch.long, device=device)
    return {
        "prompt_embeds": embeds[0],
        "negative_prompt_embeds": embeds[1],
        "prompt_attention_mask": mask,
        "negative_prompt_attention_mask": mask,
    }


def render(pipeline: Any, size: tuple[int, int, int], steps: int, prompts: dict[str, Any]) -> torch.Tensor:
    """Decoded frames in [0, 1]."""
    width, height, frames = size
    start = Image.new("RGB", (width, height), (200, 40, 40))
    video, mask = get_image_to_video_latent(start, None, frames, (height, width))
    with torch.inference_mode():
        output = pipeline(
            **prompts,
            num_frames=frames,
            video=video,
            mask_video=mask,
            height=height,
            width=width,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            generator=torch.Generator(device="cpu").manual_seed(0),
            output_type="pt",
        )
    frames: torch.Tensor = output.frames
    return frames


def measure(fn: Callable[[], object], device: torch.device) -> tuple[float, int]:
    """(seconds, peak bytes) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return time.perf_counter() - started, torch.cuda.max_memory_allocated(device)
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    return seconds, cpu_peak_bytes(fn)  # a second, profiled call: the profiler would distort the timing


def cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """High-water mark of torch's CPU allocations during fn, replayed from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # kineto_results is not a documented attribute, but it is the only place the raw [memory] events are kept.
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak
