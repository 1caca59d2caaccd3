"""Seconds per video and peak memory of each memory mode, with the seed design (fp16 + model offload) as baseline,
and each render optimisation that changes the output (step caching, FP8) against the exact path on the same seed.

On a GPU it builds the full-size EasyAnimate V5.1-7B InP transformer and MagVIT VAE from their published configs
with random weights (speed and memory do not depend on weight values) and renders 512x512x25 and 672x384x49 at 30
steps in bf16. The Qwen2-VL-7B text encoder is left out: random prompt embeddings of the shape it produces
(1, 256, 3584) go in instead, so its ~16.6 GB of weights and one forward pass per prompt are excluded from both the
timings and the peaks. With `--tiny` (the default without CUDA) the same code runs the built-in tiny model at tiny
sizes, where the offload modes and the seed design are reported as skipped on a CPU.

Optimisation rows run resident at max(steps, 10) steps (a step cache has nothing to skip in two steps): seconds per
video, speed-up over the exact path timed in the same section, steps computed and reused, and the drift of the
decoded frames from the exact path (mean absolute difference in 8-bit levels, PSNR). FP8 needs an Ada or Hopper GPU
and torchao (the `fp8` extra); elsewhere its row says why it was skipped.

    python -m bench.render_modes [--tiny] [--steps N] [--size WxHxF ...] [--step-cache-threshold T] [--output F]

Prints one JSON report. Peaks: torch.cuda.max_memory_allocated on CUDA; on a CPU, the torch allocator's
high-water mark reconstructed from torch.profiler memory events (allocations made by torch only).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import diffusers
import torch

from bench.render_harness import GUIDANCE, TEXT_SHAPE, build_full_pipeline, measure, prompt_kwargs, render
from consumer.memory.estimate import estimate_bytes
from consumer.memory.modes import MemoryMode, supported_modes
from consumer.render.flops import peak_tflops, transformer_step_flops
from consumer.render.fp8 import fp8_unsupported_reason, quantize_fp8
from consumer.render.module_sizes import profile_pipeline
from consumer.render.offload import apply_mode
from consumer.render.step_cache import apply_step_cache, remove_step_cache, step_cache_stats
from consumer.render.tiny import build_tiny_pipeline

FULL_SIZES = ((512, 512, 25), (672, 384, 49))
TINY_SIZES = ((256, 256, 5),)  # one small size keeps the smoke test well under a minute
STEP_CACHE_THRESHOLD = 0.1  # upstream suggests 0.08-0.1 for V5.1-7B
MIN_OPTIMISATION_STEPS = 10


def run_modes(
    pipeline: Any, device: torch.device, sizes: Sequence[tuple[int, int, int]], steps: int, prompts: dict[str, Any]
) -> list[dict[str, Any]]:
    profile = profile_pipeline(pipeline)
    runs: list[dict[str, Any]] = []
    for mode in MemoryMode:
        for size in sizes:
            row = _row("mode", mode.value, str(pipeline.transformer.dtype), size)
            if mode not in supported_modes(device.type):
                runs.append({**row, "skipped": "offload needs an accelerator"})
                continue
            apply_mode(pipeline, mode, device)
            runs.append({**row, **_timed(pipeline, device, size, steps, prompts)})
            runs[-1]["estimate_bytes"] = estimate_bytes(*size, GUIDANCE, mode, profile)
    return runs


def run_seed_design(
    pipeline: Any, device: torch.device, sizes: Sequence[tuple[int, int, int]], steps: int, prompts: dict[str, Any]
) -> list[dict[str, Any]]:
    """The first design: fp16 weights and enable_model_cpu_offload, no VAE tiling."""
    rows = [_row("seed", "fp16+model_cpu_offload", "torch.float16", size) for size in sizes]
    if device.type != "cuda":
        return [{**row, "skipped": "model offload needs an accelerator"} for row in rows]
    apply_mode(pipeline, MemoryMode.RESIDENT, device)  # removes the hooks the modes left behind
    pipeline.to(dtype=torch.float16)
    prompts = {k: v.half() if k.endswith("embeds") else v for k, v in prompts.items()}
    pipeline.enable_model_cpu_offload(device=device)
    return [{**row, **_timed(pipeline, device, size, steps, prompts)} for row, size in zip(rows, sizes, strict=True)]


def run_optimisations(
    pipeline: Any,
    device: torch.device,
    sizes: Sequence[tuple[int, int, int]],
    steps: int,
    prompts: dict[str, Any],
    *,
    dtype: torch.dtype,
    step_cache_threshold: float,
) -> list[dict[str, Any]]:
    """The exact path, then each optimisation on the same seed, resident in the pipeline's working dtype. FP8 comes
    last: quantizing cannot be undone."""
    apply_mode(pipeline, MemoryMode.RESIDENT, device)  # removes the hooks the seed design left behind
    pipeline.to(dtype=dtype)
    steps = max(steps, MIN_OPTIMISATION_STEPS)
    runs: list[dict[str, Any]] = []
    exact: dict[tuple[int, int, int], tuple[dict[str, Any], torch.Tensor]] = {}
    for size in sizes:
        frames: list[torch.Tensor] = []
        timed = _timed(pipeline, device, size, steps, prompts, keep=frames)
        exact[size] = timed, frames[0]
        runs.append({**_row("optimisation", "exact", str(dtype), size), **timed})
        apply_step_cache(pipeline, step_cache_threshold)
        try:
            timed = _timed(pipeline, device, size, steps, prompts, keep=frames)
            stats = step_cache_stats(pipeline)
        finally:
            remove_step_cache(pipeline)
        if stats is None:
            raise RuntimeError("the step cache hooks went missing during the render")
        runs.append(
            {
                **_row("optimisation", f"step_cache(threshold={step_cache_threshold})", str(dtype), size),
                **timed,
                **_scaled_flops(timed, stats.computed / steps),  # reused steps run no transformer blocks
                **_against(exact[size], timed, frames[0]),
                "steps_computed": stats.computed,
                "steps_reused": stats.reused,
            }
        )
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    installed = importlib.util.find_spec("torchao") is not None
    unsupported = fp8_unsupported_reason(device, capability, dtype, torchao_installed=installed)
    if unsupported is None:
        quantize_fp8(pipeline.transformer)
    for size in sizes:
        row = _row("optimisation", "fp8", "float8_e4m3fn", size)
        if unsupported is not None:
            runs.append({**row, "skipped": unsupported})
            continue
        frames = []
        timed = _timed(pipeline, device, size, steps, prompts, keep=frames)
        runs.append({**row, **timed, **_against(exact[size], timed, frames[0])})
    return runs


def _against(exact: tuple[dict[str, Any], torch.Tensor], timed: dict[str, Any], frames: torch.Tensor) -> dict[str, Any]:
    exact_timed, exact_frames = exact
    return {"speedup_vs_exact": round(exact_timed["seconds"] / timed["seconds"], 3), **drift(frames, exact_frames)}


def _scaled_flops(timed: dict[str, Any], fraction: float) -> dict[str, Any]:
    """The FLOP figures of a render that ran only `fraction` of its steps' transformer work."""
    fraction_of_peak = timed["fraction_of_bf16_peak"]
    return {
        "transformer_tflop": round(timed["transformer_tflop"] * fraction, 3),
        "achieved_tflops_per_s": round(timed["achieved_tflops_per_s"] * fraction, 3),
        "fraction_of_bf16_peak": round(fraction_of_peak * fraction, 4) if fraction_of_peak else None,
    }


def drift(frames: torch.Tensor, exact: torch.Tensor) -> dict[str, float]:
    """How far decoded frames in [0, 1] are from the exact path's: mean absolute difference in 8-bit levels, PSNR."""
    difference = frames.float() - exact.float()
    mse = float(difference.square().mean())
    return {
        "drift_mean_abs_8bit": round(float(difference.abs().mean()) * 255, 4),
        "drift_psnr_db": round(10 * math.log10(1 / mse), 2) if mse > 0 else math.inf,
    }


def _timed(
    pipeline: Any,
    device: torch.device,
    size: tuple[int, int, int],
    steps: int,
    prompts: dict[str, Any],
    *,
    keep: list[torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Timings of one render; `keep` receives its frames (on the CPU)."""
    render(pipeline, size, 1, prompts)  # warm-up, untimed: lazy init, CUDA kernels, cuDNN autotuning, hooks

    def timed_render() -> None:
        frames = render(pipeline, size, steps, prompts)
        if keep is not None:
            keep[:] = [frames.cpu()]

    seconds, peak = measure(timed_render, device)
    width, height, frames = size
    flops = steps * transformer_step_flops(
        pipeline.transformer, width=width, height=height, num_frames=frames, guidance_scale=GUIDANCE
    )
    achieved = flops / seconds / 1e12
    peak_tf = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    return {
        "steps": steps,
        "seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4),
        "peak_bytes": peak,
        "transformer_tflop": round(flops / 1e12, 3),
        # Over the whole render (VAE included), so a lower bound of what the transformer steps reach.
        "achieved_tflops_per_s": round(achieved, 3),
        "fraction_of_bf16_peak": round(achieved / peak_tf, 4) if peak_tf else None,
    }


def _row(design: str, mode: str, dtype: str, size: tuple[int, int, int]) -> dict[str, Any]:
    width, height, frames = size
    return {"design": design, "mode": mode, "dtype": dtype, "width": width, "height": height, "num_frames": frames}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model at tiny sizes (default without CUDA)")
    parser.add_argument("--steps", type=int, help="denoising steps (30 full size, 2 tiny)")
    parser.add_argument("--size", action="append", help="WxHxF, repeatable")
    parser.add_argument("--step-cache-threshold", type=float, default=STEP_CACHE_THRESHOLD, help="step cache row")
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    steps = args.steps or (2 if tiny else 30)
    sizes = [_parse_size(s) for s in args.size] if args.size else (TINY_SIZES if tiny else FULL_SIZES)
    if tiny:
        pipeline = build_tiny_pipeline()
        pipeline.set_progress_bar_config(disable=True)
        pipeline.to(device)
    else:
        pipeline = build_full_pipeline(device, torch.bfloat16)
    prompts = prompt_kwargs(pipeline, device, tiny=tiny)
    dtype = pipeline.transformer.dtype
    runs = run_modes(pipeline, device, sizes, steps, prompts)
    runs += run_seed_design(pipeline, device, sizes, steps, prompts)
    runs += run_optimisations(
        pipeline, device, sizes, steps, prompts, dtype=dtype, step_cache_threshold=args.step_cache_threshold
    )
    report = {
        "model": "tiny" if tiny else "easyanimate-v5.1-7b-inp, random weights",
        "text_encoder": "tiny Qwen2-VL" if tiny else f"excluded: random prompt embeds {list(TEXT_SHAPE)}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "guidance_scale": GUIDANCE,
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _parse_size(text: str) -> tuple[int, int, int]:
    width, height, frames = (int(part) for part in text.lower().split("x"))
    return width, height, frames


if __name__ == "__main__":
    main()
