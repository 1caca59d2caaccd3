"""The step cache (consumer/render/step_cache.py: cache-dit's DBCache, F1B0, 4 warm-up steps) at several thresholds
against the exact path on the tiny EasyAnimate model, on a CPU: steps computed and reused, drift of the decoded
frames from the exact path (PSNR), CPU seconds per video.

The hand-written TeaCache-style cache it replaced was measured by this script at commit 668b02a (its rows in
bench/results/step_cache_compare.json, "hand-written TeaCache"; docs/benchmarks.md compares the two).

The tiny transformer has one block, which leaves DBCache nothing to skip (its first block always runs): both caches
are measured on the tiny model with its transformer rebuilt at `--layers` blocks (same config otherwise, seeded).
One torch thread; CPU seconds are `time.process_time` over one call after an untimed warm-up call.

    python -m bench.step_cache_compare [--layers 8] [--steps 24] [--size 64x64x9]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from bench.render_modes import drift
from consumer.render.families.base import LoadedModel
from consumer.render.loader import load_model
from consumer.render.render_spec import RenderSpec
from consumer.render.step_cache import FIRST_BLOCKS, WARMUP_STEPS, StepCache

__all__ = ["deepened", "main", "timed"]

THRESHOLDS = (0.05, 0.12, 0.24)


def deepened(layers: int) -> LoadedModel:
    model = load_model("tiny", device=torch.device("cpu"), dtype=torch.float32)
    pipeline = model.pipeline
    config = {**pipeline.transformer.config, "num_layers": layers, "mmdit_layers": layers}
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        pipeline.transformer = type(pipeline.transformer).from_config(config).eval()
    finally:
        torch.random.set_rng_state(state)
    return model


def timed(model: LoadedModel, spec: RenderSpec, before: Callable[[], None]) -> tuple[NDArray[np.float32], float]:
    prepared = model.adapter.prepare(spec, None, model.pipelines)

    def run() -> NDArray[np.float32]:
        before()
        with torch.inference_mode():
            return model.adapter.call(
                model.pipelines,
                spec,
                prepared,
                lambda _step, _latents: None,
                torch.Generator(device="cpu").manual_seed(spec.seed),
            )

    run()
    started = time.process_time()
    frames = run()
    return frames, time.process_time() - started


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--size", default="64x64x9")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    width, height, frames = (int(part) for part in args.size.split("x"))
    spec = RenderSpec("a red sneaker on a white table", "", width, height, frames, args.steps, 5.0, seed=1)
    model = deepened(args.layers)
    pipeline = model.pipeline
    exact, exact_s = timed(model, spec, lambda: None)
    runs: list[dict[str, Any]] = [{"cache": "exact", "cpu_s": round(exact_s, 3)}]
    for threshold in THRESHOLDS:
        cache = StepCache([pipeline.transformer], threshold)
        cached, seconds = timed(model, spec, lambda cache=cache: cache.begin(spec.steps))
        stats = cache.stats()
        cache.remove()
        name = f"cache-dit DBCache F{FIRST_BLOCKS}B0 warmup {WARMUP_STEPS} {threshold}"
        runs.append(_row(name, stats.computed, stats.reused, frames=cached, exact=exact, seconds=seconds))
    report = {
        "model": f"tiny easyanimate, transformer at {args.layers} blocks",
        "size": args.size,
        "steps": args.steps,
        "cache_dit": version("cache-dit"),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))
    return report


def _row(
    name: str, computed: int, reused: int, *, frames: NDArray[np.float32], exact: NDArray[np.float32], seconds: float
) -> dict[str, Any]:
    return {
        "cache": name,
        "steps_computed": computed,
        "steps_reused": reused,
        "cpu_s": round(seconds, 3),
        **drift(torch.from_numpy(frames), torch.from_numpy(exact)),
    }


if __name__ == "__main__":
    main()
