"""Step caching (cache-dit's DBCache) in the real tiny pipelines: the exact path untouched at threshold 0, bounded
drift, nothing carried between renders or past the last step, compiled transformers, every family."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from consumer.errors import RenderTimeout
from consumer.render.loader import load_model
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.render.step_cache import WARMUP_STEPS, StepCache, StepCacheStats

CPU = torch.device("cpu")
# Ten steps: enough for the cache to have steps to skip after the warm-up steps that always run.
SPEC = RenderSpec(
    prompt="a red shoe", negative_prompt="", width=256, height=256, num_frames=5, steps=10, guidance_scale=5.0, seed=3
)
THRESHOLD = 0.2


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


async def _render(renderer: Renderer, spec: RenderSpec = SPEC, image: Image.Image | None = None) -> np.ndarray:
    await renderer.start()
    return (await renderer.render(spec, image, timeout_s=120)).frames


def _stats(renderer: Renderer) -> StepCacheStats:
    cache = renderer._model.step_cache if renderer._model is not None else None
    assert cache is not None
    return cache.stats()


async def test_threshold_zero_is_the_exact_path(tiny_renderer: Renderer, make_renderer: Callable) -> None:
    model = load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=0.0)
    assert model.step_cache is None  # nothing enabled at all
    assert np.array_equal(await _render(make_renderer(model)), await _render(tiny_renderer))


async def test_a_cache_that_never_skips_changes_nothing(tiny_renderer: Renderer, make_renderer: Callable) -> None:
    """Splitting the block stack around the first block must not disturb the exact computation."""
    renderer = make_renderer(load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=1e-9))
    frames = await _render(renderer)
    assert _stats(renderer) == StepCacheStats(computed=SPEC.steps, reused=0)
    assert np.array_equal(frames, await _render(tiny_renderer))


async def test_a_positive_threshold_reuses_steps_and_drifts_boundedly(
    tiny_renderer: Renderer, make_renderer: Callable
) -> None:
    renderer = make_renderer(load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    cached = await _render(renderer)
    stats = _stats(renderer)
    assert stats.computed + stats.reused == SPEC.steps
    assert stats.reused >= 3 and stats.computed >= WARMUP_STEPS
    exact = await _render(tiny_renderer)
    drift = np.abs(cached.astype(np.int16) - exact.astype(np.int16))
    assert 0 < float(drift.mean()) < 2.0
    assert _psnr(cached, exact) > 40


async def test_nothing_is_carried_past_the_last_step(make_renderer: Callable) -> None:
    """The cached residuals are freed once the last step is done, before the VAE decodes and until the next render."""
    renderer = make_renderer(load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    held: list[int] = []
    await renderer.start()
    await renderer.render(
        SPEC, None, timeout_s=120, on_progress=lambda _step, _total: held.append(_stats(renderer).held_bytes)
    )
    assert max(held[:-1]) > 0  # carried between steps
    assert _stats(renderer).held_bytes == 0


async def test_removing_the_cache_restores_the_exact_path(tiny_renderer: Renderer, make_renderer: Callable) -> None:
    model = load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD)
    assert model.step_cache is not None
    model.step_cache.remove()
    exact_again = make_renderer(dataclasses.replace(model, step_cache=None))
    assert np.array_equal(await _render(exact_again), await _render(tiny_renderer))


async def test_each_render_starts_fresh(make_renderer: Callable) -> None:
    """Two renders in a row, and a render after an abandoned one, give the same frames and the same step counts."""
    renderer = make_renderer(load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    first = await _render(renderer)
    first_stats = _stats(renderer)
    assert np.array_equal(await _render(renderer), first)
    with pytest.raises(RenderTimeout):
        await renderer.render(SPEC, None, timeout_s=1e-9)  # stops after step 1 with the cache half-built
    assert np.array_equal(await _render(renderer), first)
    assert _stats(renderer) == first_stats


async def test_other_seeds_and_step_counts_reuse_the_same_cache(make_renderer: Callable) -> None:
    renderer = make_renderer(load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    await _render(renderer, RenderSpec(**{**SPEC.__dict__, "steps": 4}))
    stats = _stats(renderer)
    assert stats.computed + stats.reused == 4
    frames = await _render(renderer, RenderSpec(**{**SPEC.__dict__, "seed": 9, "width": 128, "height": 128}))
    assert frames.shape == (5, 128, 128, 3)


async def test_a_compiled_transformer_keeps_the_cache(make_renderer: Callable) -> None:
    """cache-dit is enabled on the transformer before it is compiled (the eager backend checks the wiring on a CPU)."""
    compiled = make_renderer(
        load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD, compile_backend="eager")
    )
    plain = make_renderer(load_model("tiny", device=CPU, dtype=torch.float32, step_cache_threshold=THRESHOLD))
    assert np.array_equal(await _render(compiled), await _render(plain))
    assert _stats(compiled) == _stats(plain) and _stats(plain).reused > 0


@pytest.mark.parametrize(("family", "frames"), [("wan", 5), ("ltx", 9), ("hunyuanvideo15", 5), ("cogvideox", 17)])
async def test_every_family_caches_and_one_transformer_serves_both_kinds_alike(
    make_renderer: Callable, family: str, frames: int
) -> None:
    """Text-to-video renders the same alone and right after an image-to-video render on the same (shared)
    transformer: the cache context is the transformer's and starts fresh every render."""
    spec = RenderSpec(**{**SPEC.__dict__, "width": 64, "height": 64, "num_frames": frames, "steps": 12})
    renderer = make_renderer(load_model(f"tiny:{family}", device=CPU, dtype=torch.float32, step_cache_threshold=0.5))
    alone = await _render(renderer, spec)
    assert _stats(renderer).computed + _stats(renderer).reused == spec.steps
    await _render(renderer, spec, Image.new("RGB", (64, 64), (200, 40, 40)))
    assert np.array_equal(await _render(renderer, spec), alone)


def test_the_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StepCache([], 0.0)


def test_the_stand_in_is_left_alone() -> None:
    model = load_model("standin", device=CPU, dtype=torch.float32, standin_render_s=0, step_cache_threshold=0.1)
    assert model.step_cache is None and not hasattr(model.pipeline, "transformer")
