"""Every model family's tiny model on the CPU: seconds per video (image-to-video and text-to-video, through the
family's adapter, as the worker calls it) and the memory estimate against the measured peak.

    python -m bench.family_tiny [--steps N] [--size PX] [--output F]

The measured peak is the weights (all resident) plus the high-water mark of torch's CPU allocations during the call,
replayed from torch.profiler's memory events (`bench.render_harness.cpu_peak_bytes`); the estimate is
`consumer.memory.estimate` in `resident` mode for the profile of the loaded tiny model. Tiny models have tiny
hidden sizes, so fixed costs (text encoders padded to their full prompt length, the VAE's first layers) weigh more
than at full size: the error here says how the estimate behaves at the small end, not at full size.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from bench.render_harness import measure
from consumer.memory.estimate import estimate_bytes
from consumer.memory.modes import MemoryMode
from consumer.render.families.base import LoadedModel
from consumer.render.loader import load_model
from consumer.render.module_sizes import profile_model
from consumer.render.render_spec import RenderSpec

__all__ = ["main", "run_family"]

FRAMES = {"easyanimate": 9, "wan": 9, "ltx": 9, "hunyuanvideo15": 9, "cogvideox": 17}  # on each frame rule
GUIDANCE = 5.0


def run_family(family: str, *, size: int, steps: int) -> list[dict[str, Any]]:
    """One row per kind the tiny model serves: seconds, measured peak, estimate and its error."""
    model = load_model(f"tiny:{family}", device=torch.device("cpu"), dtype=torch.float32)
    profile = profile_model(model)
    frames = FRAMES[family]
    spec = RenderSpec("a red shoe on a table", "", size, size, frames, steps, GUIDANCE, seed=1, fps=8)
    rows = []
    for kind, image in (("i2v", Image.new("RGB", (size, size), (200, 40, 40))), ("t2v", None)):
        if model.pipelines.for_kind(image) is None:
            continue
        _call(model, spec, image)  # warm-up: lazy init, first-call allocations
        seconds, activations = measure(lambda image=image: _call(model, spec, image), torch.device("cpu"))
        measured = profile.weights_bytes + activations
        estimated = estimate_bytes(size, size, frames, GUIDANCE, MemoryMode.RESIDENT, profile)
        rows.append(
            {
                "family": family,
                "kind": kind,
                "size": f"{size}x{size}x{frames}",
                "steps": steps,
                "seconds_per_video": round(seconds, 3),
                "weights_mib": round(profile.weights_bytes / 2**20, 2),
                "measured_peak_mib": round(measured / 2**20, 2),
                "estimate_mib": round(estimated / 2**20, 2),
                "estimate_error": round(estimated / measured - 1, 3),
            }
        )
    return rows


def _call(model: LoadedModel, spec: RenderSpec, image: Image.Image | None) -> object:
    prepared = model.adapter.prepare(spec, image, model.pipelines)
    with torch.inference_mode():
        return model.adapter.call(model.pipelines, spec, prepared, lambda _step: None)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="square side in pixels (every family's multiple)")
    parser.add_argument("--family", action="append", help="only these families (default: all)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    families = args.family or list(FRAMES)
    report = {
        "torch_threads": torch.get_num_threads(),
        "runs": [row for family in families for row in run_family(family, size=args.size, steps=args.steps)],
    }
    text = json.dumps(report, indent=1)
    if args.output is not None:
        args.output.write_text(text + "\n", encoding="utf-8")
    print(text)
    return report


if __name__ == "__main__":
    main()
