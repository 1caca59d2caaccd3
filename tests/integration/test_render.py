"""The real EasyAnimate inpaint pipeline with tiny weights: determinism, loading from a folder, deadlines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from consumer.errors import ModelUnavailable, RenderTimeout
from consumer.render.loader import load_model
from consumer.render.render_spec import RenderSpec
from consumer.render.renderer import Renderer
from consumer.render.tiny import build_tiny_pipeline

CPU = torch.device("cpu")
# 128x128 (smaller than a request may ask for): the VAE decode is nearly all of a tiny render's cost, and at 256x256
# it takes seven times as long; nothing here depends on the size.
SPEC = RenderSpec(
    prompt="a red shoe", negative_prompt="", width=128, height=128, num_frames=5, steps=2, guidance_scale=5.0, seed=3
)


async def _render(renderer: Renderer, spec: RenderSpec = SPEC, image: Image.Image | None = None) -> np.ndarray:
    await renderer.start()
    return (await renderer.render(spec, image, timeout_s=60)).frames


async def test_same_seed_same_frames_other_seed_other_frames(tiny_renderer: Renderer) -> None:
    first = await _render(tiny_renderer)
    again = await _render(tiny_renderer)
    other = await _render(tiny_renderer, RenderSpec(**{**SPEC.__dict__, "seed": 4}))
    assert first.shape == (5, 128, 128, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


async def test_start_image_conditions_the_render(tiny_renderer: Renderer) -> None:
    red = Image.new("RGB", (256, 256), (220, 20, 20))
    blue = Image.new("RGB", (256, 256), (20, 20, 220))
    assert not np.array_equal(await _render(tiny_renderer, image=red), await _render(tiny_renderer, image=blue))


async def test_frame_count_is_rounded_to_the_vae_grid(tiny_renderer: Renderer) -> None:
    frames = await _render(tiny_renderer, RenderSpec(**{**SPEC.__dict__, "num_frames": 6}))
    assert frames.shape[0] == 5  # MagVIT compresses time 4x: 4k+1 frames


async def test_a_checkpoint_folder_loads_through_the_same_path(tmp_path: Path, tiny_renderer: Renderer) -> None:
    """What `save_pretrained` writes is the layout of a real V5.1 InP diffusers folder."""
    build_tiny_pipeline().save_pretrained(tmp_path)
    assert (tmp_path / "model_index.json").exists()
    from_folder = Renderer(lambda: load_model(str(tmp_path), device=CPU, dtype=torch.float32))
    try:
        assert np.array_equal(await _render(from_folder), await _render(tiny_renderer))
    finally:
        from_folder.close()


async def test_missing_checkpoint_is_a_clear_start_up_error(tmp_path: Path) -> None:
    renderer = Renderer(lambda: load_model(str(tmp_path / "nope"), device=CPU, dtype=torch.float32))
    try:
        with pytest.raises(ModelUnavailable, match="cannot load a model from") as raised:
            await renderer.start()
        assert "easyanimate (EasyAnimateInpaintPipeline)" in raised.value.message  # what it would have taken
        assert renderer.state == "failed"
    finally:
        renderer.close()


async def test_runaway_render_stops_between_steps(tiny_renderer: Renderer) -> None:
    await tiny_renderer.start()
    steps: list[int] = []
    with pytest.raises(RenderTimeout, match="step 1 of 2"):
        await tiny_renderer.render(SPEC, None, timeout_s=1e-9, on_progress=lambda step, _: steps.append(step))
    assert steps == []
    assert tiny_renderer.state == "ready"  # the worker goes on with the next request
    assert (await _render(tiny_renderer)).shape[0] == 5


async def test_progress_is_reported_on_the_event_loop(tiny_renderer: Renderer) -> None:
    await tiny_renderer.start()
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, int, bool]] = []

    def on_progress(step: int, total: int) -> None:
        seen.append((step, total, asyncio.get_running_loop() is loop))

    await tiny_renderer.render(SPEC, None, timeout_s=60, on_progress=on_progress)
    await asyncio.sleep(0)  # let the last call_soon_threadsafe callback run
    assert seen == [(1, 2, True), (2, 2, True)]


@pytest.mark.timeout(120)
async def test_compiled_transformer_and_warm_up(make_renderer) -> None:
    """Wiring of VIDGEN_TORCH_COMPILE and VIDGEN_WARMUP; the eager backend keeps it fast on a CPU."""
    model = load_model("tiny", device=CPU, dtype=torch.float32, compile_backend="eager")
    assert isinstance(model.pipeline.transformer, torch._dynamo.eval_frame.OptimizedModule)
    renderer: Renderer = make_renderer(model)
    await renderer.start()
    await renderer.warm_up(128, 128, 5)
    assert renderer.state == "ready"
    assert (await renderer.render(SPEC, None, timeout_s=60)).frames.shape == (5, 128, 128, 3)
