"""Every model family through its adapter, as the worker calls it: seconds per video (image-to-video and
text-to-video), peak memory against the memory estimate, and the floating-point work of the call (MFU on a GPU).

    python -m bench.families [--full] [--family NAME ...] [--steps N] [--size WxHxF] [--output F]

On a CPU (the default without CUDA) each family's tiny model renders 64x64 at 4 steps; the measured peak is the weights
(all resident) plus the high-water mark of torch's CPU allocations during the call, replayed from torch.profiler's
memory events (`bench.render_harness.cpu_peak_bytes`). Tiny models have tiny hidden sizes, so fixed costs (text
encoders padded to their full prompt length, the VAE's first layers) weigh more than at full size: the error there
says how the estimate behaves at the small end, not at full size.

With `--full` (the default with CUDA) each new family's full-size checkpoint is built with random weights in bf16
(`bench.family_full`: Wan 2.2 TI2V-5B, LTX-Video 2B 0.9.5, HunyuanVideo-1.5 480p I2V, CogVideoX-1.5 5B I2V, text
encoders included) and renders its typical product size at 30 steps, resident; the peak is
`torch.cuda.max_memory_allocated`. FLOPs are counted by torch's FlopCounterMode over the warm-up call (the same
render), so the fraction of the bf16 peak covers the whole call: text encoders, transformer steps and VAE. EasyAnimate
at full size is `bench.render_modes`.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from bench.family_full import CHECKPOINTS, full_model
from bench.render_harness import measure, parse_size
from consumer.memory.estimate import estimate_bytes
from consumer.memory.modes import MemoryMode
from consumer.render.families.base import LoadedModel
from consumer.render.flops import peak_tflops
from consumer.render.loader import load_model
from consumer.render.module_sizes import profile_model
from consumer.render.render_spec import RenderSpec

__all__ = ["FAMILY_SIZES", "family_rows", "main", "run_family"]

TINY_FRAMES = {"easyanimate": 9, "wan": 9, "ltx": 9, "hunyuanvideo15": 9, "cogvideox": 17}  # on each frame rule
FAMILY_SIZES = {  # each family's typical product render: (width, height, frames)
    "wan": (1280, 704, 121),  # TI2V-5B's 720p, 5 s at 24 fps
    "ltx": (704, 512, 121),  # the pipeline's default size, 5 s at 24 fps
    "hunyuanvideo15": (848, 480, 121),  # 480p (image-to-video takes its 480p bucket from the image)
    "cogvideox": (1360, 768, 81),  # CogVideoX-1.5's size, 5 s at 16 fps
}
GUIDANCE = 5.0
PROMPT = "a red shoe on a white table, studio light, slow turn"


def run_family(
    model: LoadedModel, family: str, size: tuple[int, int, int], steps: int, device: torch.device
) -> list[dict[str, Any]]:
    """One row per kind the model serves: seconds, measured peak, estimate and its error, FLOPs and MFU."""
    profile = profile_model(model)
    width, height, frames = size
    spec = RenderSpec(
        PROMPT, "", width, height, frames, steps, GUIDANCE, seed=1, fps=model.rules.fps if model.rules else 8
    )
    rows = []
    for kind, image in (("i2v", Image.new("RGB", (width, height), (200, 40, 40))), ("t2v", None)):
        if model.pipelines.for_kind(image) is None:
            continue
        with FlopCounterMode(display=False) as counter:  # the warm-up: lazy init, first-call allocations, kernels
            _call(model, spec, image, device)
        seconds, peak = measure(lambda image=image: _call(model, spec, image, device), device)
        measured = peak if device.type == "cuda" else profile.weights_bytes + peak
        estimated = estimate_bytes(width, height, frames, GUIDANCE, MemoryMode.RESIDENT, profile)
        achieved = counter.get_total_flops() / seconds / 1e12
        peak_tf = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
        rows.append(
            {
                "family": family,
                "kind": kind,
                "size": f"{width}x{height}x{frames}",
                "steps": steps,
                "seconds_per_video": round(seconds, 3),
                "weights_mib": round(profile.weights_bytes / 2**20, 2),
                "measured_peak_mib": round(measured / 2**20, 2),
                "estimate_mib": round(estimated / 2**20, 2),
                "estimate_error": round(estimated / measured - 1, 3),
                "gflop": round(counter.get_total_flops() / 1e9, 3),
                "achieved_tflops_per_s": round(achieved, 3),
                "fraction_of_bf16_peak": round(achieved / peak_tf, 4) if peak_tf else None,
            }
        )
    return rows


def _call(model: LoadedModel, spec: RenderSpec, image: Image.Image | None, device: torch.device) -> object:
    prepared = model.adapter.prepare(spec, image, model.pipelines)
    with torch.inference_mode():
        frames = model.adapter.call(
            model.pipelines,
            spec,
            prepared,
            lambda _step, _latents: None,
            torch.Generator(device="cpu").manual_seed(spec.seed),
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return frames


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="full-size models (the default with CUDA)")
    parser.add_argument("--family", action="append", help="only these families (default: all)")
    parser.add_argument("--steps", type=int, help="denoising steps (30 full size, 4 tiny)")
    parser.add_argument("--size", help="WxHxF for every family (default: FAMILY_SIZES; 64x64 tiny)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    full = args.full or device.type == "cuda"
    families = args.family or list(CHECKPOINTS if full else TINY_FRAMES)
    report = {
        "models": "full size, random weights, bf16" if full else "tiny, float32",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "torch_threads": torch.get_num_threads(),
        "runs": [row for family in families for row in family_rows(family, full, device, args.steps, args.size)],
    }
    text = json.dumps(report, indent=1)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    print(text)
    return report


def family_rows(
    family: str, full: bool, device: torch.device, steps: int | None, size_text: str | None
) -> list[dict[str, Any]]:
    """Build `family`'s model (full size or tiny), measure it, and let it go before the next one."""
    size = parse_size(size_text) if size_text else FAMILY_SIZES[family] if full else (64, 64, TINY_FRAMES[family])
    torch.manual_seed(0)
    if full:
        model = full_model(family, device, torch.bfloat16)
    else:
        model = load_model(f"tiny:{family}", device=device, dtype=torch.float32)
    rows = run_family(model, family, size, steps or (30 if full else 4), device)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    main()
