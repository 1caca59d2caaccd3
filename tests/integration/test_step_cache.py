"""Step caching (TeaCache-style) in the real tiny pipeline: the exact path untouched at threshold 0, bounded drift,
nothing carried between renders, compiled transformers."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from consumer.errors import RenderTimeout
from consumer.render.loader import load_pipeline
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.render.step_cache import (
    StepCacheStats,
    remove_step_cache,
    step_cache_stats,
)

CPU = torch.device("cpu")
# Ten steps: enough for the cache to have steps to skip between the always-computed first and last. 128x128: the VAE
# decode is nearly all of a tiny render's cost (seven times as much at 256x256), and the cache acts before it.
SPEC = RenderSpec(
    prompt="a red shoe", negative_prompt="", width=128, height=128, num_frames=5, steps=10, guidance_scale=5.0, seed=3
)
# On the tiny model each step's rescaled change is about 0.05-0.06, so this reuses every other step or so.
THRESHOLD = 0.2

# The real tiny pipeline


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


async def _render(renderer: Renderer, spec: RenderSpec = SPEC) -> np.ndarray:
    await renderer.start()
    return (await renderer.render(spec, None, timeout_s=120)).frames


async def test_threshold_zero_is_the_exact_path(tiny_renderer: Renderer, make_renderer: Callable) -> None:
    pipeline = load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=0.0)
    assert step_cache_stats(pipeline) is None  # no hooks at all
    assert np.array_equal(await _render(make_renderer(pipeline)), await _render(tiny_renderer))


async def test_hooks_that_never_skip_change_nothing(tiny_renderer: Renderer, make_renderer: Callable) -> None:
    """The measurement on the side (norm1 of the first block) must not disturb the exact computation."""
    pipeline = load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=1e-9)
    frames = await _render(make_renderer(pipeline))
    assert step_cache_stats(pipeline) == StepCacheStats(computed=SPEC.steps, reused=0)
    assert np.array_equal(frames, await _render(tiny_renderer))


async def test_a_positive_threshold_reuses_steps_and_drifts_boundedly(
    tiny_renderer: Renderer, make_renderer: Callable
) -> None:
    pipeline = load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD)
    cached = await _render(make_renderer(pipeline))
    stats = step_cache_stats(pipeline)
    assert stats is not None and stats.computed + stats.reused == SPEC.steps
    assert stats.reused >= 3 and stats.computed >= 2  # first and last at least
    exact = await _render(tiny_renderer)
    drift = np.abs(cached.astype(np.int16) - exact.astype(np.int16))
    # Measured on this CPU at 128x128: 6 of 10 steps reused, mean abs difference 0.29 of 255, PSNR 52.5 dB.
    assert 0 < float(drift.mean()) < 2.0
    assert _psnr(cached, exact) > 40


async def test_nothing_is_carried_past_the_last_step(make_renderer: Callable) -> None:
    """The residual and the previous input are freed before the VAE decodes, not kept until the next render."""
    renderer = make_renderer(load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    held: list[int] = []

    def watch(_step: int, _total: int) -> None:
        stats = step_cache_stats(renderer._pipeline)
        held.append(stats.held_bytes if stats is not None else -1)

    await renderer.start()
    await renderer.render(SPEC, None, timeout_s=120, on_progress=watch)
    assert max(held[:-1]) > 0  # carried between steps
    stats = step_cache_stats(renderer._pipeline)
    assert stats is not None and stats.held_bytes == 0


async def test_removing_the_cache_restores_the_exact_path(tiny_renderer: Renderer, make_renderer: Callable) -> None:
    pipeline = load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD)
    remove_step_cache(pipeline)
    assert step_cache_stats(pipeline) is None
    assert np.array_equal(await _render(make_renderer(pipeline)), await _render(tiny_renderer))


async def test_each_render_starts_fresh(make_renderer: Callable) -> None:
    """Two renders in a row, and a render after an abandoned one, give the same frames and the same step counts."""
    renderer = make_renderer(load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    first = await _render(renderer)
    first_stats = step_cache_stats(renderer._pipeline)
    assert np.array_equal(await _render(renderer), first)
    with pytest.raises(RenderTimeout):
        await renderer.render(SPEC, None, timeout_s=1e-9)  # stops after step 1 with state half-built
    assert np.array_equal(await _render(renderer), first)
    assert step_cache_stats(renderer._pipeline) == first_stats


async def test_other_seeds_and_step_counts_reuse_the_same_hooks(make_renderer: Callable) -> None:
    renderer = make_renderer(load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    await _render(renderer, RenderSpec(**{**SPEC.__dict__, "steps": 4}))
    stats = step_cache_stats(renderer._pipeline)
    assert stats is not None and stats.computed + stats.reused == 4
    frames = await _render(renderer, RenderSpec(**{**SPEC.__dict__, "seed": 9, "width": 160, "height": 144}))
    assert frames.shape == (5, 144, 160, 3)


@pytest.mark.timeout(120)
async def test_a_compiled_transformer_keeps_the_cache(make_renderer: Callable) -> None:
    """The decision runs outside the compiled graph (the eager backend checks the wiring on a CPU)."""
    compiled = load_pipeline(
        "tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD, compile_backend="eager"
    )
    frames = await _render(make_renderer(compiled))
    plain = load_pipeline("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD)
    assert np.array_equal(frames, await _render(make_renderer(plain)))
    assert step_cache_stats(compiled) == step_cache_stats(plain)
